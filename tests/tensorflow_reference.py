"""TensorFlow's own reader, run in a child process, as the reference for gpt2_support.tf_checkpoint.

TensorFlow is never imported into the test process itself: beside triton (installed with PyTorch's
CUDA builds) it aborts the process as soon as PyTorch imports triton (see gpt2_support/tf_checkpoint.py).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

from gpt2_from_scratch.weights import tensorflow_child_environment

_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
reader = tf.train.load_checkpoint(sys.argv[1])
np.savez(sys.argv[2], **{name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()})
"""


def tensorflow_tensors(ckpt_path, work_dir):
    """{name: array} as tf.train.load_checkpoint(ckpt_path).get_tensor returns them."""
    out = Path(work_dir) / "tf_tensors.npz"
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(ckpt_path), str(out)], env=tensorflow_child_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, f"TensorFlow's reader failed:\n{result.stdout[-3000:]}"
    with np.load(out) as stored:
        return {name: stored[name] for name in stored.files}
