// An HTTP/2 stream (h2c, prior knowledge) that never reads its body, for
// t/61-slow-filters.t.
//
//   node h2-stream.mjs <port> <path> <gzip 0|1> <timeout ms>
//
// Opens the stream and prints {"type":"response","status":N,"encoding":...}
// once the response headers are in.  It never reads the body: the stream
// window fills and the server's output piles up.  When the server ends or
// resets the stream it prints {"type":"closed","rstCode":N,"aborted":bool};
// after <timeout ms> without that, {"type":"timeout"}.  Then it exits.

import http2 from 'node:http2';

const [port, path, gzip, timeout] = process.argv.slice(2);

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const session = http2.connect(`http://127.0.0.1:${port}`);
session.on('error', (e) => out({ type: 'session-error', message: String(e.message) }));

const headers = { ':path': path, accept: 'text/event-stream' };
if (gzip === '1') {
    headers['accept-encoding'] = 'gzip';
}

const req = session.request(headers, { endStream: true });
let done = false;

const finish = (obj) => {
    if (done) {
        return;
    }
    done = true;
    out(obj);
    session.destroy();
    setTimeout(() => process.exit(0), 50);
};

req.on('response', (h) => {
    out({ type: 'response', status: h[':status'],
          encoding: h['content-encoding'] ?? null });
    // no 'data' listener and no resume(): the body is never read
});
req.on('aborted', () => { req.wasAborted = true; });
req.on('error', () => {});
req.on('close', () => finish({ type: 'closed', rstCode: req.rstCode,
                               aborted: req.wasAborted === true }));

setTimeout(() => finish({ type: 'timeout' }), Number(timeout)).unref();
