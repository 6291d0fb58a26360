// The IVS docs' Node snippet (jsonwebtoken.sign with the PEM key, ES384) behind
// express, answering POST /v1/token like ivs-playback-auth. The docs write
// exp as Date.now() + ... (milliseconds); here it is fixed to seconds.
//
// node server.js PORT PRIVATE_KEY_PEM CHANNEL_ARN PLAYBACK_URL
const express = require("express");
const jwt = require("jsonwebtoken");
const fs = require("fs");

const [port, keyPath, channelArn, playbackUrl] = process.argv.slice(2);
const privateKey = fs.readFileSync(keyPath);
const app = express();
app.use(express.json());

app.post("/v1/token", (req, res) => {
  const payload = {
    "aws:channel-arn": channelArn,
    "aws:access-control-allow-origin": "*",
    "aws:viewer-id": String(req.body.viewer_id || "viewer"),
    exp: Math.floor(Date.now() / 1000) + 300,
  };
  const token = jwt.sign(payload, privateKey, { algorithm: "ES384" });
  res.json({ token, playback_url: `${playbackUrl}?token=${token}`, channel_arn: channelArn, expires_at: payload.exp });
});

const server = app.listen(Number(port), "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
