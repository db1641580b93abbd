"""The replica's kernel entry point, named like Colab's: `google.colab` is imported before the first cell."""
import google.colab  # noqa: F401 - Colab's kernel has it loaded: notebooks test "google.colab" in sys.modules
from ipykernel import kernelapp

if __name__ == "__main__":
    kernelapp.launch_new_instance()
