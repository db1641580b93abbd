"""Training beyond the from-scratch loop of `vitcourse.train`: transfer learning (fine-tuning modes, probes)."""
