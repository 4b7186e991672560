# Shared by the benchmark scripts (sourced).

# sign SECRET: exports BENCH_TS and BENCH_SIG, Infobip's signature of a call with an empty body made now. It stays
# valid for ibex's 300 s replay window: sign again before each part of a run that could outlast it.
sign() {
  BENCH_TS=$(($(date +%s%N) / 1000000))
  BENCH_SIG=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$1" "$BENCH_TS")
  export BENCH_TS BENCH_SIG
}

# save_order SHOP KEY WORK: the shop's answer for order 1001, saved as WORK/static/orders/1001 for nginx to serve
# (the cheap upstream). nginx's workers run as another user: they must be able to read what mktemp's private
# directory holds.
save_order() {
  mkdir -p "$3/static/orders"
  chmod -R a+rX "$3"
  curl -fsS -H "X-Api-Key: $2" "http://$1/orders/1001?currency=EUR" >"$3/static/orders/1001"
  chmod a+r "$3/static/orders/1001"
}

# static_server LISTEN WORK: the nginx server block serving what save_order saved.
static_server() {
  cat <<NGINX
  server {
    listen $1;
    root $2/static;
    default_type application/json;
    location = /health { return 200 "ok"; }
  }
NGINX
}
