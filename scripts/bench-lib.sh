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

# nginx_conf WORK HTTP_BLOCK: writes WORK/nginx.conf, one worker per core, no access log, with HTTP_BLOCK (upstreams
# and server blocks) inside `http`; its pid and error log stay in WORK.
nginx_conf() {
  cat >"$1/nginx.conf" <<NGINX
worker_processes auto;
pid $1/nginx.pid;
error_log $1/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
$2
}
NGINX
}

# proxy_server LISTEN NAME UPSTREAM KEY: nginx as target (c), proxying to UPSTREAM over kept-alive connections and
# adding the partner's API key, as ibex does.
proxy_server() {
  cat <<NGINX
  upstream $2 { server $3; keepalive 64; }
  server {
    listen $1;
    location / {
      proxy_pass http://$2;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Api-Key $4;
    }
  }
NGINX
}
