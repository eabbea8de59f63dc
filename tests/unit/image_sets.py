"""Small image sets of real PNG and JPEG files (scikit-learn's digits) in the layouts people bring."""

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DIGITS = load_digits()


def digit(path, row=0):
    """Writes digit number `row` as a 24x24 gray image file (PNG or JPEG by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(DIGITS.images[row] * (255 / 16)).astype(np.uint8)
    Image.fromarray(pixels).resize((24, 24)).save(path)
    return path


def photo_set(root, images=12, label_folder="annotations"):
    """The 14-label photo set's layout: images/imN.jpg and <label_folder>/<label>.txt listing image numbers."""
    for number in range(1, images + 1):
        digit(root / "images" / f"im{number}.jpg", number)
    (root / label_folder).mkdir(parents=True)
    (root / label_folder / "clouds.txt").write_text("".join(f"{n}\n" for n in range(1, images + 1, 2)))
    (root / label_folder / "sea.txt").write_text("".join(f"{n}\n" for n in range(1, images + 1, 3)))
    return root


def csv_set(root, header="image,labels"):
    for number in range(6):
        digit(root / "images" / f"d{number}.png", number)
    table = root / "labels.csv"
    table.write_text(header + "\n" + "".join(f"d{n}.png,{'odd' if n % 2 else 'even'}\n" for n in range(6)))
    return table


def class_folders(root, counts):
    for index, (name, count) in enumerate(counts.items()):
        for number in range(count):
            digit(root / name / f"{number}.png", index + 10 * number)
    return root
