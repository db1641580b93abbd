"""Colab's frontend messages: only `get_ipynb` (the notebook as open in the browser) is stood in."""
import json
import os


class MessageError(RuntimeError):
    pass


def blocking_request(request_type, request="", timeout_sec=5, parent=None):
    if request_type != "get_ipynb":
        raise MessageError(f"the replica stands in for get_ipynb only, not {request_type!r}")
    with open(os.environ["COLAB_REPLICA_NOTEBOOK"], encoding="utf-8") as f:
        return {"ipynb": json.load(f)}
