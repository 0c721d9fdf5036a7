"""EC2 training: the launch request, the user-data template, watching and terminating instances.

boto3/botocore are imported lazily; the user data and the spot watcher run on the
instance itself.
"""
