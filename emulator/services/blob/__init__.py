"""An Azure Blob Storage data plane served by a workspace itself (Put Blob, Put Block, Put Block
List, ranged Get, SAS), shared by both roles: Azure ML's run-history SAS URLs and Databricks'
``artifacts/credentials-for-*`` signed URLs point here, over each workspace's artifact root."""
