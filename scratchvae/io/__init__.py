"""Files: atomic writes (:mod:`.files`), the safetensors format (:mod:`.safetensors`), and weights to and
from PyTorch's layout (:mod:`.interop`)."""
