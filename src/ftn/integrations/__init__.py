"""ftn inside other people's tools. Each module is imported only by the tool that uses it.

* :mod:`ftn.integrations.comfyui` -- ComfyUI nodes (load a model, apply it at a level, alpha or mask,
  export a plain network); the custom-node folder ``comfyui/ftn_nodes`` in the repository loads them.

``import ftn`` does not import this package.
"""
