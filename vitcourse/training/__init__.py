"""Training: the loop (`train`), the recipes, the runtime (device, precision, fast mode) and transfer learning."""
