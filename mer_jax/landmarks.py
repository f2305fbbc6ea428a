"""The iBUG / dlib 68-point landmark scheme every layer shares (built datasets, the face
graph, the synthetic faces): its size, its named regions and its left-right mirror.

"Right" is the subject's right, i.e. the image left. This module uses numpy only, so
every layer may use it.
"""

import numpy as np

NUM_LANDMARKS = 68

# iBUG index ranges (end exclusive).
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
NOSE = range(27, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
MOUTH = range(48, 68)

# The landmark each landmark becomes when the face is mirrored left-right.
MIRROR = np.array(
    [16 - i for i in range(17)]
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)
