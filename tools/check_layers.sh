#!/usr/bin/env bash
# Layers point one way: core <- backends <- ops <- models <- train <- tools. A file may include
# headers from its own layer and the layers below it, never above.
cd "$(dirname "$0")/.."
order=(core backends ops models train tools)
rank() { for i in "${!order[@]}"; do [ "${order[$i]}" = "$1" ] && echo "$i" && return; done; echo -1; }
bad=0
for layer in "${order[@]}"; do
    r=$(rank "$layer")
    while IFS= read -r line; do
        file=${line%%:*}
        inc=$(sed -E 's/.*#include "([^/"]+)\/.*/\1/' <<<"$line")
        ir=$(rank "$inc")
        if [ "$inc" = "tests" ] && [ "$layer" != "tools" ]; then ir=99; fi
        if [ "$ir" -gt "$r" ]; then
            echo "layer violation: $file includes from $inc/ (above $layer/)"
            bad=1
        fi
    done < <(grep -rn --include=*.c --include=*.h '#include "' "$layer" 2>/dev/null | grep -E '#include "[a-z_]+/')
done
[ $bad -eq 0 ] && echo "layers: ok (${order[*]})"
exit $bad
