from .hf import DEFAULT_ENCODER, HFEncoder, create_hf_encoder, resolve_model_path

__all__ = ["DEFAULT_ENCODER", "HFEncoder", "create_hf_encoder", "resolve_model_path"]
