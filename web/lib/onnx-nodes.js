// The node list of an ONNX model (names, op types, inputs, outputs), read straight from the protobuf bytes
// without decoding the weights: enough to pick nodes by their place in the graph.

/** @typedef {{name: string, op: string, inputs: string[], outputs: string[]}} OnnxNode */

const utf8 = new TextDecoder();

/** Protobuf fields of one message: [field number, wire type, value or [start, end) of a length-delimited field]. */
class Reader {
  /** @param {Uint8Array} bytes @param {number} start @param {number} end */
  constructor(bytes, start, end) {
    this.b = bytes;
    this.pos = start;
    this.end = end;
  }

  varint() {
    let result = 0, scale = 1, byte;
    do {
      byte = this.b[this.pos++];
      result += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80);
    return result;
  }

  /** @returns {Generator<{field: number, start: number, end: number}>} length-delimited fields only */
  *fields() {
    while (this.pos < this.end) {
      const key = this.varint();
      const field = Math.floor(key / 8), wire = key & 7;
      if (wire === 0) this.varint();
      else if (wire === 1) this.pos += 8;
      else if (wire === 5) this.pos += 4;
      else if (wire === 2) {
        const length = this.varint();
        const start = this.pos;
        this.pos += length;
        yield { field, start, end: start + length };
      } else throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

/**
 * ModelProto.graph (7) -> GraphProto.node (1) -> NodeProto input (1), output (2), name (3), op_type (4).
 * @param {Uint8Array} bytes an .onnx file
 * @returns {OnnxNode[]}
 */
export function onnxNodes(bytes) {
  const nodes = [];
  for (const g of new Reader(bytes, 0, bytes.length).fields()) {
    if (g.field !== 7) continue;
    for (const n of new Reader(bytes, g.start, g.end).fields()) {
      if (n.field !== 1) continue;
      /** @type {OnnxNode} */
      const node = { name: '', op: '', inputs: [], outputs: [] };
      for (const f of new Reader(bytes, n.start, n.end).fields()) {
        const text = () => utf8.decode(bytes.subarray(f.start, f.end));
        if (f.field === 1) node.inputs.push(text());
        else if (f.field === 2) node.outputs.push(text());
        else if (f.field === 3) node.name = text();
        else if (f.field === 4) node.op = text();
      }
      nodes.push(node);
    }
  }
  return nodes;
}

/**
 * Names of the nodes that do not depend (transitively) on the graph input `input`.
 * @param {OnnxNode[]} nodes in topological order, as ONNX stores them
 * @param {string} input
 */
export function independentOf(nodes, input) {
  const values = new Set([input]);
  const out = [];
  for (const n of nodes) {
    if (n.inputs.some((i) => values.has(i))) n.outputs.forEach((o) => values.add(o));
    else out.push(n.name);
  }
  return out;
}
