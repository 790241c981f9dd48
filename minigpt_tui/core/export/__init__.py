"""Taking a run elsewhere: a folder `transformers` loads (hf_folder.py; our own Transformer as
GPT-NeoX in neox.py, imported models back to their own architecture), its tokenizer as a
`tokenizers` file (tokenizer_files.py), a GGUF file llama.cpp runs (gguf_file.py) and a plain
safetensors bundle for RNN runs (bundle.py); exporter.py is the one entry to all three, and fit.py
says which formats fit a run without loading its weights. May import core's top modules, data, models, runs
and pretrained (the GPT-2 and Llama mappings, both ways)."""
