// The page <-> worker message protocol. Requests carry an id; every reply names the request it answers.

/**
 * @typedef {object} LoadRequest
 * @property {'load'} type
 * @property {number} id
 * @property {string} base URL of the bundle folder, ending with '/'
 * @property {string|null} dtype fp32, int8, q4, fp16, or null for the bundle's default
 * @property {'auto'|'webgpu'|'wasm'} backend
 * @property {string} [engine] the decoder engine (engines/list.js): 'ort-gqa' (language_model_gqa, KV cache bound
 *   in place; WebGPU), 'ort-grow' (language_model, KV cache grown per step: comparisons, benchmarks), 'wgsl' (the
 *   page's own WGSL kernels on the bundle's WGSL pack, janusweb wgsl-pack; WebGPU), or 'auto' (default: the first
 *   that runs here). The old ?kv= value 'grow' stands for 'ort-grow'.
 */

/**
 * @typedef {object} ChatRequest
 * @property {'generate'} type
 * @property {number} id
 * @property {'chat'} task
 * @property {string} question
 * @property {Blob|null} image null: text-only chat
 * @property {number} maxNewTokens
 * @property {boolean} [stopAtEos] false: run all maxNewTokens (benchmarks); default true
 */

/**
 * @typedef {object} ImageRequest
 * @property {'generate'} type
 * @property {number} id
 * @property {'image'} task
 * @property {string} prompt
 * @property {number} count 1 to 4 images
 * @property {number} guidance CFG scale
 * @property {number} temperature 0 is greedy
 * @property {number} seed draws are uniforms(seed, count * tokens), as janusweb.sampling
 */

/**
 * @typedef {object} CancelRequest
 * @property {'cancel'} type
 * @property {number} id the request to cancel
 */

/** @typedef {LoadRequest|ChatRequest|ImageRequest|CancelRequest} Request */

/**
 * @typedef {object} ProgressMessage
 * @property {'progress'} type
 * @property {number} id
 * @property {'download'|'session'|'step'} what
 * @property {string} name file, graph, or 'image'
 * @property {number} done bytes, sessions or steps done
 * @property {number} total
 * @property {boolean} [cached] a download served from the Cache API
 */

/**
 * @typedef {object} TokenMessage
 * @property {'token'} type
 * @property {number} id
 * @property {number} token
 * @property {string} text the whole answer so far
 * @property {number} tokensPerSecond decode speed since the first token
 */

/**
 * @typedef {object} ImageMessage
 * @property {'image'} type
 * @property {number} id
 * @property {number} index
 * @property {number} width
 * @property {number} height
 * @property {Uint8ClampedArray} rgba for display
 * @property {Float32Array} decoded [3,H,W] in [-1,1], the decoder's output
 * @property {number[]} tokens the image tokens
 */

/**
 * @typedef {object} BackendInfo
 * @property {'webgpu'|'wasm'} ep the execution provider every session runs on
 * @property {string} adapter
 * @property {string} dtype e.g. "fp32" or "int8 (prepare_inputs_embeds: fp32)"
 * @property {Record<string, string>} dtypes graph -> the dtype it runs at
 * @property {number} threads
 * @property {string[]} notes fallbacks and their reasons
 * @property {string} why which backend runs and why, in one plain sentence
 * @property {string} kvCache which language model graph runs and how it holds the KV cache
 * @property {string} engine the decoder engine's name (?engine=)
 * @property {Record<string, string>} cpuNodes WebGPU: the graphs with some nodes on the CPU EP, and why: 'named nodes'
 *   (placed there on purpose: the vision tower of the text-only prepare_inputs_embeds session, the mask
 *   arithmetic of language_model_gqa) or 'ORT fallback' (nodes ORT itself put there: shape arithmetic; created
 *   without session.disable_cpu_ep_fallback). Sessions not listed ran with it.
 */

/**
 * @typedef {object} DoneMessage
 * @property {'done'} type
 * @property {number} id
 * @property {boolean} cancelled
 * @property {BackendInfo} [backend] load
 * @property {number[]} [tokens] chat: the answer's token ids
 * @property {string} [text] chat
 * @property {number} [tokensPerSecond] chat
 * @property {number} [seconds] generation time
 * @property {number} [gpuReads] GPU->CPU buffer reads (mapAsync) during the request
 */

/**
 * @typedef {object} ErrorMessage
 * @property {'error'} type
 * @property {number} id
 * @property {'checksum'|'backend'|'input'|'other'} kind
 * @property {string} message
 */

/** @typedef {ProgressMessage|TokenMessage|ImageMessage|DoneMessage|ErrorMessage} Reply */

export {};
