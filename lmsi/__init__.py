"""lmsi: Large Language Models Can Self-Improve (Huang et al., 2022) in JAX."""
