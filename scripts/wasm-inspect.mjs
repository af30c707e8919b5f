// Runs bench/wasm-inspect built for wasm32-wasip1 under Node's WASI: V8 executing the same
// inspection code the filter runs inside Envoy's V8 runtime.
//   node scripts/wasm-inspect.mjs target/wasm32-wasip1/release/interlock-bench-wasm-inspect.wasm
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, exit } from "node:process";

const path = argv[2];
if (!path) {
  console.error("usage: node scripts/wasm-inspect.mjs FILE.wasm");
  exit(2);
}
const wasi = new WASI({ version: "preview1", args: [path], env: {} });
const module = await WebAssembly.compile(await readFile(path));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance) ?? 0);
