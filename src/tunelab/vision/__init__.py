"""Image classification with pretrained timm backbones: everything of a run that is about images.

The engine (:mod:`tunelab.engine`) knows no modality; :mod:`tunelab.tasks` hands it this package's
parts for an image run, as it hands it :mod:`tunelab.text`'s for a text run:

- :mod:`tunelab.vision.data`: sources (folders, CSV manifests, built-in sets), decode once,
  duplicate checks, prediction inputs (:mod:`tunelab.vision.data.predict`)
- :mod:`tunelab.vision.backbones`: the timm adapter, its named groups and packaged weights
- :mod:`tunelab.vision.model`: normalisation + backbone + the configured head (timm's pooling)
- :mod:`tunelab.vision.loop`, :mod:`tunelab.vision.cache`, :mod:`tunelab.vision.augment`: the loop
  adapter (augmentation, Mixup/CutMix) and the freeze-boundary cache of augmented views
- :mod:`tunelab.vision.auto_augment`: ``augment: auto``, decided by the probe on mirror images
- :mod:`tunelab.vision.baselines`: the raw pixels the image baseline reads

    run = tunelab.fit("examples/default.yaml")
    tunelab.predict(run.dir, ["photo.jpg"])
"""
