# Run inside the kraken/torch:cuda rootfs after the wheels are unpacked (mmdebstrap hook).
# PyPI's CUDA runtime ships only the versioned libcudart.so.13; the extension build links
# with -lcudart, which wants the unversioned name a CUDA toolkit install provides.
set -eu
lib=/usr/local/lib/python3.11/dist-packages/nvidia/cu13/lib
test -e "$lib/libcudart.so.13"
ln -sf libcudart.so.13 "$lib/libcudart.so"
test -x /usr/local/lib/python3.11/dist-packages/nvidia/cu13/bin/nvcc
test -x /usr/local/lib/python3.11/dist-packages/bin/ninja
