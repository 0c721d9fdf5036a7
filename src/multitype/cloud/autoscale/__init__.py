"""The serving fleet of ``multitype autoscale``: a launch template, an Auto Scaling group, its scaling policy.

- :mod:`~multitype.cloud.autoscale.userdata`: the instances' user data (install, ``multitype serve`` under systemd);
- :mod:`~multitype.cloud.autoscale.settings`: flags and ``aws.autoscale`` resolved and checked (cron, sizes, types);
- :mod:`~multitype.cloud.autoscale.documents`: the request documents, checked against botocore's service models;
- :mod:`~multitype.cloud.autoscale.fleet`: plan (the differences from what AWS holds), apply, status, destroy.

boto3/botocore are imported lazily.
"""
