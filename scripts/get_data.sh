#!/usr/bin/env bash
# Make sure `fmnist` will find Fashion-MNIST, asking for no more than it needs:
#
#   1. Already there (DATA_DIR, Keras's cache, or Debian's package): nothing to do, no root.
#   2. Else, with apt (Debian/Ubuntu) and root or passwordless sudo: install Debian's
#      dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
#   3. Else (no apt: macOS, Fedora, a conda image; or apt without root): nothing is installed,
#      and the first run downloads the data through Keras (internet needed); one line says so,
#      with the command that installs it instead.
#
# DATA_DIR (or the first argument) is the folder a config's data.dir names, if any.
set -euo pipefail
data_dir=${1:-${DATA_DIR:-}}
debian=${FMNIST_DEBIAN_DIR:-/usr/share/datasets/fashion-mnist}  # the variable: for tests
keras_cache=${KERAS_HOME:-$HOME/.keras}/datasets/fashion-mnist

has_data() {  # the four IDX files (plain or .gz), or the two CSV files
  local d=$1 name
  [ -n "$d" ] && [ -d "$d" ] || return 1
  if [ -f "$d/fashion-mnist_train.csv" ] && [ -f "$d/fashion-mnist_test.csv" ]; then
    return 0
  fi
  for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -f "$d/$name" ] || [ -f "$d/$name.gz" ] || return 1
  done
}

if has_data "$data_dir" || has_data "$keras_cache" || has_data "$debian"; then
  exit 0
fi
if [ -n "$data_dir" ]; then
  echo "get_data: $data_dir holds no Fashion-MNIST (the 4 IDX files, plain or .gz, or the 2 CSV files); put them there or unset DATA_DIR" >&2
  exit 3
fi

install=(apt-get install -y -q dataset-fashion-mnist)
if command -v apt-get >/dev/null; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "get_data: Fashion-MNIST not found; the first run downloads it through Keras (or install it: sudo ${install[*]})" >&2
      exit 0
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" "${install[@]}" >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" "${install[@]}" >/dev/null; }
  has_data "$debian" && exit 0
  echo "get_data: ${install[*]} did not install $debian; set data.dir to a folder with the data" >&2
  exit 3
fi
echo "get_data: Fashion-MNIST not found and no apt-get here; the first run downloads it through Keras (internet needed), or set data.dir" >&2
exit 0
