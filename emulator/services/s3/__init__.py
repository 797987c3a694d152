"""Unity Catalog's managed storage: an S3 endpoint (moto behind a gate) for model-version files.

Its own process (``emulator.control.s3_serve``; the ``s3`` service under Compose), so this package
imports moto and botocore, never MLflow or the workspaces: that keeps the process's start short
(it is part of every ``emulator up``).

* ``app``          builds the gate around moto's S3 app, objects restored from ``<state>/s3/``
* ``gate``         authentication, per-version authorization, sealing of finalized versions
* ``sigv4``        SigV4 checks (header or presigned URL) with botocore's own signer
* ``credentials``  the temporary AWS-style credentials (issued by the UC API, checked by the gate)
* ``object_files`` what the gate keeps on disk (moto keeps S3 in memory)
"""
