"""The classifier pipeline's library (pipelines/classify): an LLM labels texts, an encoder learns them."""

# Importing potstill.cli first sets the HF offline switches and quiets the known import noise before
# any module here loads transformers (stage scripts import potstill.classify before potstill.cli).
import potstill.cli  # noqa: F401
