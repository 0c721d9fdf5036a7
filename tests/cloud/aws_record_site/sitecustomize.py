"""Record the AWS operations of this Python process (see ``tests/cloud/aws_recorder.py``: ``subprocess_env``).

Python imports ``sitecustomize`` at start-up from ``sys.path``; a test puts this
folder on ``PYTHONPATH`` and names the file in ``MULTITYPE_AWS_RECORD_TO``. Every
botocore client made afterwards appends one JSON line per operation (service,
operation, parameters without bodies, the client's region) before the request is
validated or sent. Nothing happens without the variable.
"""

import os

if os.environ.get("MULTITYPE_AWS_RECORD_TO"):
    import functools
    import json

    import botocore.session

    _PATH = os.environ["MULTITYPE_AWS_RECORD_TO"]
    _ORIGINAL = botocore.session.Session.create_client

    def _record(params, model, region=None, **_):
        service = model.service_model.signing_name or model.service_model.endpoint_prefix
        plain = json.loads(json.dumps({k: v for k, v in params.items() if k != "Body"}, default=lambda _: None))
        line = json.dumps({"service": service, "operation": model.name, "ours": True, "params": plain,
                           "region": region})
        # appended, a line per write: the processes of one instance do not overwrite each other
        with open(_PATH, "a", encoding="utf-8") as out:
            out.write(line + "\n")

    def _create_client(self, *args, **kwargs):
        client = _ORIGINAL(self, *args, **kwargs)
        client.meta.events.register("provide-client-params",
                                    functools.partial(_record, region=client.meta.region_name),
                                    unique_id="multitype-aws-recorder")
        return client

    botocore.session.Session.create_client = _create_client
