// Puppeteer reads this when npm installs it from this folder (install.sh) and
// when render.mjs runs here: never download a browser of its own, use
// Debian's chromium (apt-get install chromium).
module.exports = {
  skipDownload: true,
  executablePath: process.env.PUPPETEER_EXECUTABLE_PATH || '/usr/bin/chromium',
};
