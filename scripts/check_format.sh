#!/usr/bin/env bash
# The `format` test: every C++ file in git keeps the root .clang-format (clang-format
# --dry-run reports what it would change). Usage: scripts/check_format.sh [ROOT]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
command -v clang-format >/dev/null || { echo "check_format: clang-format not found (make deps-test)"; exit 1; }
files=$(git ls-files '*.cpp' '*.hpp' '*.h' 2>/dev/null || find . -name build -prune -o \( -name '*.cpp' -o -name '*.hpp' \) -print)
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "check_format: $(echo "$files" | wc -w) files formatted as .clang-format says"
