"""A stand-in for Colab's own `google.colab` package, for the Colab replica (tests/colab/).

Only what the course touches, behaving as Colab's does (its messages included): `drive.mount`,
`files.download`, and `_message.blocking_request("get_ipynb")`, through which Colab's frontend hands the
open notebook to the kernel. The replica sets:

    COLAB_REPLICA_DRIVE      the folder that plays the student's Google Drive (kept across "VMs")
    COLAB_REPLICA_NOTEBOOK   the notebook as open in the browser (what get_ipynb returns)
    COLAB_REPLICA_DOWNLOADS  where files.download puts what the browser would download
"""
