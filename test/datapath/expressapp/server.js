// An unmodified express-session + connect-redis stack, configured only from the wiring
// session-operator injects (README, "How an app reads its wiring"). SESSION_SECRET is the
// app's own; everything about Redis comes from the operator.
const express = require("express");
const session = require("express-session");
const RedisStore = require("connect-redis").default;
const Redis = require("ioredis");

const redis = new Redis({
  sentinels: process.env.SESSION_REDIS_SENTINEL_ADDRS.split(",").map((a) => {
    const [host, port] = a.split(":");
    return { host, port: Number(port) };
  }),
  name: process.env.SESSION_REDIS_SENTINEL_MASTER,
  username: process.env.SESSION_REDIS_USERNAME,
  password: process.env.SESSION_REDIS_PASSWORD,
  sentinelUsername: process.env.SESSION_REDIS_USERNAME,
  sentinelPassword: process.env.SESSION_REDIS_PASSWORD,
});
redis.on("error", (e) => console.error("redis:", e.message));

const app = express();
app.use(session({
  store: new RedisStore({ client: redis, ttl: Number(process.env.SESSION_TTL_SECONDS) }),
  secret: process.env.SESSION_SECRET,
  resave: false,
  saveUninitialized: false,
}));
app.get("/healthz", (req, res) => {
  redis.ping().then(() => res.send("ok"), (e) => res.status(503).send(e.message));
});
app.post("/login", (req, res) => {
  req.session.n = 0;
  res.json({ id: req.sessionID, n: req.session.n });
});
app.get("/bump", (req, res) => {
  if (req.session.n === undefined) return res.status(401).json({ error: "no session" });
  req.session.n += 1;
  res.json({ id: req.sessionID, n: req.session.n });
});
app.listen(Number(process.env.PORT), "127.0.0.1");
