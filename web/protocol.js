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
 *   that runs here), 'cpu' (the page's own WebAssembly kernels on the bundle's CPU pack, janusweb cpu-pack; WASM).
 *   The old ?kv= value 'grow' stands for 'ort-grow'.
 * @property {number} [threads] at most this many WASM threads (?threads=)
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
 * @property {'new'|'continue'} [conversation] 'new': the first turn of a conversation whose KV cache the worker keeps
 *   (ending the one before); 'continue': the next turn of it, prefilling only the new question (and the end of the
 *   last answer); absent: a single question, its cache released after it
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
 * @property {number} [steps] draw only the first this many tokens of each image (benchmarks): the rest stay 0 in
 *   the tokens and in what is decoded, as janusweb.generate's shortened run; absent: all of them
 * @property {number} [preview] every this many steps, decode the tokens drawn so far and reply a PreviewMessage per
 *   image (0 or absent: none); the final images do not change
 * @property {number} [previewBudget] skip a preview while the previews so far took more than this share of the
 *   request's time so far (the page's default: 0.1); absent: every `preview` steps, whatever they cost
 */

/**
 * @typedef {object} CancelRequest
 * @property {'cancel'} type
 * @property {number} id the request to cancel
 */

/**
 * @typedef {object} PlanRequest what a load would do (the first screen), without loading: replied with a DoneMessage
 *   carrying `plan`
 * @property {'plan'} type
 * @property {number} id
 * @property {string} base
 * @property {string|null} dtype
 * @property {'auto'|'webgpu'|'wasm'} backend
 * @property {string} [engine]
 */

/**
 * @typedef {object} LoadPlan
 * @property {string} model the model's name
 * @property {'webgpu'|'wasm'} ep
 * @property {string} where plain words: "on your GPU (…)", "on your CPU, 2 threads"
 * @property {string} why the backend choice in one sentence
 * @property {string[]} files the bundle files a load downloads
 * @property {number} bytes their size
 * @property {number} cachedBytes the part already in the Cache API
 * @property {number} runtimeBytes ONNX Runtime's files (ort/)
 * @property {string[]} notes
 */

/** @typedef {LoadRequest|PlanRequest|ChatRequest|ImageRequest|CancelRequest} Request */

/**
 * @typedef {object} ProgressMessage
 * @property {'progress'} type
 * @property {number} id
 * @property {'download'|'session'|'step'|'phase'} what 'phase': a phase of a request begins (generate.js's PHASES)
 * @property {string} name file, graph, 'image', or the phase's label
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
 * @typedef {object} PreviewMessage an image as far as it is drawn (the rest of its grid a neutral fill)
 * @property {'preview'} type
 * @property {number} id
 * @property {number} index
 * @property {number} step the image tokens drawn
 * @property {number} total
 * @property {number} width
 * @property {number} height
 * @property {Uint8ClampedArray} rgba
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
 * @property {LoadPlan} [plan] plan
 * @property {number[]} [tokens] chat: the answer's token ids
 * @property {string} [text] chat
 * @property {number} [tokensPerSecond] chat: decode speed, from the first token on
 * @property {number|null} [firstTokenSeconds] chat: time from the request to the first token
 * @property {number} [prefillTokens] chat: the positions this turn fed at its prefill
 * @property {number} [reusedTokens] chat: the positions already in the conversation's cache (earlier turns)
 * @property {number} [seconds] generation time
 * @property {number} [gpuReads] GPU->CPU buffer reads (mapAsync) during the request
 * @property {number} [previews] image: previews decoded
 * @property {number} [previewSeconds] image: time spent on them (reads and decoding), part of `seconds`
 */

/**
 * @typedef {object} ErrorMessage
 * @property {'error'} type
 * @property {number} id
 * @property {'checksum'|'backend'|'input'|'busy'|'other'} kind 'busy': another request is running (nothing started)
 * @property {string} message
 */

/** @typedef {ProgressMessage|TokenMessage|ImageMessage|PreviewMessage|DoneMessage|ErrorMessage} Reply */

export {};
