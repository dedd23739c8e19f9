// The page's decoder engines (see engine.js): one line each. `auto` tries them by their `auto` rank.
export { engine as ortGqa } from './ort-gqa.js';
export { engine as ortGrow } from './ort-grow.js';
export { engine as wgsl } from './wgsl/engine.js';
export { engine as cpu } from './cpu/engine.js';
