"""Looking at models: complexity, sweeps and ablations with their statistics, timing, plots, quiz answers,
interpretability (Grad-CAM, attention rollout and statistics), features and profiling."""
