/**
 * The throw-away Notebook server (lib/notebook/server.ts) needs its random token: REST requests
 * and pages without it (or with a wrong one) are refused, with `Authorization: token …` or
 * `?token=` they succeed; it listens on 127.0.0.1 only and the token is not on any command line.
 * Skips (with a reason) only when Jupyter is not installed; CI installs it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findJupyter, startNotebookServer, type NotebookServer } from "../lib/notebook/index";

const jupyter = findJupyter();

describe("notebook server token", {
  skip: jupyter ? false : "jupyter not installed: run bash environment/setup.sh",
}, () => {
  let server: NotebookServer;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-nbserver-"));

  before(async () => {
    fs.writeFileSync(path.join(dir, "hello.txt"), "hi\n");
    server = await startNotebookServer({ notebookDir: dir });
  });
  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("has a random 64-hex-digit token and listens on 127.0.0.1", () => {
    assert.match(server.token, /^[0-9a-f]{64}$/);
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);
  });

  it("refuses REST requests and pages without the token or with a wrong one", async () => {
    for (const p of ["/api/contents", "/api/kernels", "/api/status", "/api/kernelspecs"]) {
      const res = await fetch(server.url + p, { redirect: "manual" });
      assert.ok(res.status === 403 || res.status === 401, `${p} without token: HTTP ${res.status}`);
    }
    const wrong = await fetch(server.url + "/api/kernels", {
      headers: { Authorization: `token ${"0".repeat(64)}` },
      redirect: "manual",
    });
    assert.ok(wrong.status === 403 || wrong.status === 401, `wrong token: HTTP ${wrong.status}`);
    const wrongQuery = await fetch(`${server.url}/api/contents?token=${"1".repeat(64)}`, { redirect: "manual" });
    assert.ok(wrongQuery.status === 403 || wrongQuery.status === 401, `wrong ?token=: HTTP ${wrongQuery.status}`);
    // starting a kernel without the token is refused, and none is started
    const start = await fetch(server.url + "/api/kernels", { method: "POST", body: "{}", redirect: "manual" });
    assert.ok(start.status === 403 || start.status === 401, `POST /api/kernels without token: HTTP ${start.status}`);
    const kernels = await fetch(server.url + "/api/kernels", { headers: server.authHeaders() });
    assert.deepEqual(await kernels.json(), []);
    // a page redirects to the login form
    const page = await fetch(server.url + "/tree", { redirect: "manual" });
    assert.equal(page.status, 302);
    assert.match(page.headers.get("location") ?? "", /\/login/);
  });

  it("accepts the token as an Authorization header and as ?token=", async () => {
    const res = await fetch(server.url + "/api/contents", { headers: server.authHeaders() });
    assert.equal(res.status, 200);
    const listing = (await res.json()) as { content: { name: string }[] };
    assert.deepEqual(
      listing.content.map((c) => c.name),
      ["hello.txt"],
    );
    const q = await fetch(server.pageUrl("/api/contents/hello.txt"));
    assert.equal(q.status, 200);
    assert.equal(((await q.json()) as { content: string }).content, "hi\n");
    const page = await fetch(server.pageUrl("/tree"), { redirect: "manual" });
    assert.equal(page.status, 200);
  });

  it("keeps the token off every process command line", { skip: process.platform !== "linux" && "needs /proc" }, () => {
    for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
      let cmdline = "";
      try {
        cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue; // exited meanwhile
      }
      assert.ok(!cmdline.includes(server.token), `process ${pid} has the token on its command line`);
    }
  });
});
