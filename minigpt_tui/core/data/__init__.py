"""Text in, token ids out: corpora of any shape (corpus), the catalogue of named corpora and
their downloads, the char/word/BPE tokenizers behind one Tokenizer protocol, the memory-mapped
token cache and the batches training reads. Imports only core's top modules (config, paths,
fsutil, file_lock, errors)."""
