"""The comparator for weather-api under load, built as the tutorial's weather API is: Flask, PyJWT's
PyJWKClient (keys fetched from the authority and cached), the signature, issuer, audience and
expiry checked (without the tutorial's `nonce` bypass), then Open-Meteo's geocoder and forecast
(the local cloud's emulation), answering JSON. Run with Flask's threaded server, as the tutorial's
container does. With CITY_CACHE=1 it also keeps each city's answer for five minutes, as our
weather-api does, so that the comparison isolates validation and the server from upstream calls."""

import json
import os
import ssl
import time
import urllib.parse
import urllib.request

import jwt
from flask import Flask, jsonify, request

env = os.environ
tenant = env["TENANT_ID"]
authority = env["AZURE_AUTHORITY_HOST"].rstrip("/")
ctx = ssl.create_default_context(cafile=env["ENTRA_FEDERATION_CA_FILE"])
keys = jwt.PyJWKClient(f"{authority}/{tenant}/discovery/v2.0/keys", ssl_context=ctx)
v1_keys = jwt.PyJWKClient(f"{authority}/{tenant}/discovery/keys", ssl_context=ctx)
issuers = [f"https://sts.windows.net/{tenant}/", f"https://login.microsoftonline.com/{tenant}/v2.0"]
audience = env["WEATHER_API_AUDIENCE"]
geo_url = env["OPEN_METEO_GEOCODING_URL"]
forecast_url = env["OPEN_METEO_FORECAST_URL"]

app = Flask(__name__)
city_cache = {} if env.get("CITY_CACHE") == "1" else None


def get_json(url, params):
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=10) as r:
        return json.load(r)


@app.get("/weather")
def weather():
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return jsonify(error="Unauthorized", message="missing bearer token"), 401
    token = auth[len("Bearer "):]
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        client = v1_keys if unverified.get("ver") == "1.0" else keys
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuers)
    except jwt.PyJWTError as e:
        return jsonify(error="Unauthorized", message=str(e)), 401
    city = request.args.get("city", "")
    if city_cache is not None:
        hit = city_cache.get(city)
        if hit and time.monotonic() - hit[0] < 300:
            return jsonify(hit[1])
    geo = get_json(geo_url, {"name": city, "count": 1})
    place = (geo.get("results") or [None])[0]
    if place is None:
        return jsonify(error="City not found"), 404
    fc = get_json(
        forecast_url,
        {
            "latitude": place["latitude"],
            "longitude": place["longitude"],
            "current": "temperature_2m,relative_humidity_2m,wind_speed_10m,weather_code",
        },
    )
    answer = {"city": place.get("name"), "current": fc.get("current")}
    if city_cache is not None:
        city_cache[city] = (time.monotonic(), answer)
    return jsonify(answer)


app.run(host="127.0.0.1", port=int(env["PORT"]), threaded=True)
