"""Looking at models: interpretability (Grad-CAM, attention rollout and statistics) and profiling."""
