"""Text classification with pretrained transformer encoders, through the same engine as images.

A run is a text run when its config has a ``data.text`` section (or names a built-in text data
set); the stages, freezing selectors, layer-wise lr decay, penalties, audit, diagnosis, cache and
report are the image ones. What differs lives here:

- :mod:`tunelab.text.data`: CSV / JSON lines sources, tokenize-once, dynamic padding (``Tokens``)
- :mod:`tunelab.text.backbone`: the transformers ``AutoModel`` adapter, its named groups
  (embeddings, layers.0 ... layers.N-1, pooler) and the split forward the cache uses
- :mod:`tunelab.text.model`: encoder + pooling + the configurable head
- :mod:`tunelab.text.loop`, :mod:`tunelab.text.cache`: the loop adapter (length buckets, windows) and
  the freeze-boundary cache for encoders
- :mod:`tunelab.text.lexical`: the lexical blend; :mod:`tunelab.text.baselines`: the TF-IDF the text baseline reads
- :mod:`tunelab.text.report`: the most confidently wrong texts

    run = tunelab.fit("examples/text_rotten_tomatoes.yaml")
    tunelab.predict(run.dir, texts=["A triumph.", "Two hours I will never get back."])
"""
