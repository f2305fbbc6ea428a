"""mer-jax: micro-expression recognition in JAX/Flax."""
