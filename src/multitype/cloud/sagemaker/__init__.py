"""SageMaker training jobs: the request, launch, watching, stopping, collecting, and the entry point inside a job.

Modules here import boto3/botocore and the SageMaker SDK's catalog lazily, so
``multitype --help`` and the entry point inside a job stay fast.
"""
