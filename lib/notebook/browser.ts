/**
 * Headless Chromium (playwright-core driving Debian's chromium): `withChromiumPage` gives a page in
 * a throw-away profile; `inspectNotebookPage` opens a classic-Notebook page and reports what is
 * visible: output images with their natural and on-screen sizes, HTML tables, error outputs.
 * The classic Notebook page scrolls inside #site, so the viewport is made as tall as the notebook
 * before the screenshot.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Page } from "playwright-core";
import { findChromium } from "./jupyter";

export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

export interface VisibleImage {
  naturalWidth: number;
  naturalHeight: number;
  width: number;
  height: number;
  complete: boolean;
  /** MIME type from the data: URL, e.g. image/png. */
  mime: string;
}

export interface BrowserReport {
  title: string;
  images: VisibleImage[];
  tables: number;
  errorOutputs: number;
  /** Text of every visible <mark> in HTML outputs (highlighted tokens of context cards). */
  marks: string[];
  screenshot: string | null;
}

/**
 * Run `fn` with a page of a fresh headless Chromium (own temporary profile, CHROMIUM_FLAGS,
 * viewport `width` × `height`); the browser and its profile are removed afterwards.
 */
export async function withChromiumPage<T>(
  opts: { width: number; height: number },
  fn: (page: Page) => Promise<T>,
): Promise<T> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error("chromium is not installed (run bash environment/setup.sh)");
  const { chromium } = require("playwright-core") as typeof import("playwright-core");
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "is-chromium-"));
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: opts.width, height: opts.height },
    });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      return await fn(page);
    } finally {
      await context.close();
    }
  } finally {
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

export async function inspectNotebookPage(opts: {
  url: string;
  screenshotPath?: string;
  width?: number;
  maxHeight?: number;
  timeoutMs?: number;
  /** Minimum number of visible output images to wait for (default 1). */
  minImages?: number;
}): Promise<BrowserReport> {
  const width = opts.width ?? 1280;
  const timeout = opts.timeoutMs ?? 60_000;
  return withChromiumPage({ width, height: 1000 }, async (page) => {
    await page.goto(opts.url, { waitUntil: "load", timeout });
    const minImages = opts.minImages ?? 1;
    // outputs are rendered by the notebook's JavaScript after load
    await page.waitForFunction(
      (n: number) => {
        const doc = (globalThis as any).document;
        const imgs = Array.from(doc.querySelectorAll(".output_subarea img")) as any[];
        return imgs.filter((i) => i.complete && i.naturalWidth > 0).length >= n;
      },
      minImages,
      { timeout },
    );
    const height = await page.evaluate(() => {
      const doc = (globalThis as any).document;
      const el = doc.querySelector("#notebook-container") ?? doc.body;
      return Math.ceil(el.scrollHeight + 200);
    });
    await page.setViewportSize({ width, height: Math.min(Math.max(height, 800), opts.maxHeight ?? 12000) });
    await page.waitForTimeout(300); // let layout settle after the resize
    // DOM code runs in the page; typed loosely so lib/ compiles without the DOM lib (tslab has none)
    const report = await page.evaluate(() => {
      const g = globalThis as any;
      const doc = g.document;
      const imgs = Array.from(doc.querySelectorAll(".output_subarea img")) as any[];
      return {
        title: String(doc.title),
        images: imgs.map((i) => {
          const r = i.getBoundingClientRect();
          const style = g.getComputedStyle(i);
          const visible = style.visibility !== "hidden" && style.display !== "none" && r.width > 0 && r.height > 0;
          return {
            naturalWidth: i.naturalWidth,
            naturalHeight: i.naturalHeight,
            width: visible ? r.width : 0,
            height: visible ? r.height : 0,
            complete: i.complete,
            mime: (/^data:([^;,]+)/.exec(i.src) ?? ["", ""])[1],
          };
        }),
        tables: Number(doc.querySelectorAll(".output_html table").length),
        marks: (Array.from(doc.querySelectorAll(".output_html mark")) as any[])
          .filter((m) => {
            const r = m.getBoundingClientRect();
            return r.width > 0 && r.height > 0 && g.getComputedStyle(m).visibility !== "hidden";
          })
          .map((m) => String(m.textContent)),
        errorOutputs: Number(doc.querySelectorAll(".output_error").length),
      };
    });
    let screenshot: string | null = null;
    if (opts.screenshotPath) {
      fs.mkdirSync(path.dirname(opts.screenshotPath), { recursive: true });
      await page.screenshot({ path: opts.screenshotPath });
      screenshot = opts.screenshotPath;
    }
    return { ...report, screenshot };
  });
}
