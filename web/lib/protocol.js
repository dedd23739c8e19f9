// The messages between createJanusWorker's client (worker-client.js) and the worker's adapter (worker.js): a
// small RPC. Each request has an id; the worker answers with events while it runs, then one result or one error.
// Callbacks and AbortSignals do not cross: the client keeps them, forwards events to them and sends 'abort'.

/**
 * @typedef {{id: number, op: 'load', url: string, options: object}
 *   | {id: number, op: 'plan', url: string, options: object}
 *   | {id: number, op: 'chat', handle: number, request: object}
 *   | {id: number, op: 'images', handle: number, request: object}
 *   | {id: number, op: 'release', handle: number}
 *   | {id: number, op: 'abort', target: number}} Request
 *   load/plan: loadJanus / planJanus's url and options (less signal and onProgress); chat/images: the instance
 *   `handle` (from load's result) and the request (less signal and callbacks); abort: the request to abort
 */

/**
 * @typedef {{id: number, event: 'progress'|'token'|'step'|'preview', data: any}
 *   | {id: number, result: any, info?: import('./info.js').JanusInfo}
 *   | {id: number, error: {name: string, message: string}}} Reply
 *   event: a callback's argument (onProgress, onToken, onStep, onPreview); result: the call's value (load:
 *   {handle, info}), with the instance's info as it is after the call; error: the thrown error's class name and
 *   message (errors.js's errorData / reviveError)
 */

export {};
