"""The Taming Transformers prior: loading, conditioning and sampling (cached or sliding window)."""
