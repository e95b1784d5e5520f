# Sourced by scripts/serve and scripts/test: make ./.venv hold vifbroker (editable)
# and the given extras, reinstalling only when pyproject.toml changed.
vb_venv() {
  local extras="$1" stamp
  [ -x .venv/bin/python ] || python3 -m venv .venv
  stamp=".venv/.vifbroker-${extras:-base}-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    touch "$stamp"
  fi
}
