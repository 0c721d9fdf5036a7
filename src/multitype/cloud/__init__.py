"""Cloud-side code: what SageMaker and EC2 runs need (the code bundle, S3 lifecycle rules, ...).

This layer may import :mod:`multitype.storage` (clients, the S3 error table);
storage never imports from here.
"""
