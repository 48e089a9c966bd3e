// A small Express app for Slipway's builder: listens on $PORT (8080 by default).
const express = require("express");

const app = express();
app.get("/", (req, res) => {
  res.type("text/plain").send(`Hello from Express on ${process.env.K_REVISION || "slipway/builder:bookworm"}!\n`);
});

const port = parseInt(process.env.PORT || "8080", 10);
const server = app.listen(port, "0.0.0.0", () => console.log(`listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
