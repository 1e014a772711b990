// Bundles src/ into changeover/api/dashboard_assets/ (served by `changeover serve` under
// /dashboard/; gitignored). Every dependency is bundled: the page loads nothing from elsewhere.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = new URL("../changeover/api/dashboard_assets/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ["chrome110", "firefox110", "safari16"],
  outdir: out,
  logLevel: "warning",
});
copyFileSync("src/index.html", out + "index.html");
