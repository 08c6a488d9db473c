// Raw tensor bytes written as JSON from typed-array views say what one JS value per element said:
// each datatype, little-endian, from a slice at any offset, NaN and the infinities as null.
import t from 'tap';
import { rawJsonFloor, rawTensorJson } from './raw-tensors.js';

/** `bytes` at an odd offset in a larger buffer, as the protobuf decoder's slices may be. */
function unaligned(bytes: Buffer): Buffer {
  const holder = Buffer.alloc(bytes.length + 1);
  bytes.copy(holder, 1);
  return holder.subarray(1);
}

function raw(size: number, values: number[], write: (b: Buffer, v: number, at: number) => void): Buffer {
  const b = Buffer.alloc(values.length * size);
  for (const [i, v] of values.entries()) write(b, v, i * size);
  return unaligned(b);
}

t.test('each datatype as JSON', async (t) => {
  const cases: Array<[string, Buffer, unknown[]]> = [
    ['BOOL', Buffer.from([1, 0, 7]), [true, false, true]],
    ['INT8', raw(1, [-128, 5], (b, v, at) => b.writeInt8(v, at)), [-128, 5]],
    ['UINT8', raw(1, [255, 0], (b, v, at) => b.writeUInt8(v, at)), [255, 0]],
    ['INT16', raw(2, [-300, 7], (b, v, at) => b.writeInt16LE(v, at)), [-300, 7]],
    ['UINT16', raw(2, [65535], (b, v, at) => b.writeUInt16LE(v, at)), [65535]],
    ['INT32', raw(4, [-2147483648, 42], (b, v, at) => b.writeInt32LE(v, at)), [-2147483648, 42]],
    ['UINT32', raw(4, [4294967295], (b, v, at) => b.writeUInt32LE(v, at)), [4294967295]],
    ['INT64', raw(8, [-9007199254740991, 3], (b, v, at) => b.writeBigInt64LE(BigInt(v), at)), [-9007199254740991, 3]],
    ['UINT64', raw(8, [9007199254740991], (b, v, at) => b.writeBigUInt64LE(BigInt(v), at)), [9007199254740991]],
    ['FP32', raw(4, [0.1, -2.5, Number.NaN, Infinity], (b, v, at) => b.writeFloatLE(v, at)), [Math.fround(0.1), -2.5, null, null]],
    ['FP64', raw(8, [0.1, -0, 1e300], (b, v, at) => b.writeDoubleLE(v, at)), [0.1, 0, 1e300]],
    ['FP16', raw(2, [0x3c00, 0xc000, 0x7c00, 0x0001], (b, v, at) => b.writeUInt16LE(v, at)), [1, -2, null, 2 ** -24]],
  ];
  for (const [datatype, bytes, expected] of cases) {
    const size = bytes.length / expected.length;
    t.same(JSON.parse(rawTensorJson('x', datatype, [expected.length], bytes)), expected, `${datatype} (${size} bytes each)`);
  }
  t.equal(rawTensorJson('x', 'BOOL', [0], Buffer.alloc(0)), '[]', 'an empty tensor');
  const strings = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from('hi'), Buffer.from([0, 0, 0, 0])]);
  t.same(JSON.parse(rawTensorJson('x', 'BYTES', [2], strings)), ['aGk=', ''], 'BYTES, base64');
});

t.test('values that do not fill their shape are refused before they are written', async (t) => {
  t.throws(() => rawTensorJson('x', 'FP32', [2, 2], Buffer.alloc(12)), { message: 'Input "x": shape [2, 2] holds 4 values, raw_input_contents has 3' });
  t.throws(() => rawTensorJson('x', 'FP32', [1], Buffer.alloc(3)), { message: 'Input "x": 3 raw bytes are not whole FP32 values' });
  t.throws(() => rawTensorJson('x', 'BOOL', [-1], Buffer.alloc(3)), { message: 'Input "x": shape [-1] has an unknown dimension' });
  t.throws(() => rawTensorJson('x', 'BYTES', [1], Buffer.alloc(8)), { message: 'Input "x": shape [1] holds 1 values, raw_input_contents has 2' });
  t.throws(() => rawTensorJson('x', 'HALF', [1], Buffer.alloc(2)), { message: 'Input "x": unknown datatype HALF' });
});

t.test('the JSON floor: a digit and a comma per value, `true,` per BOOL', async (t) => {
  t.equal(rawJsonFloor('BOOL', Buffer.alloc(10)), 50);
  t.equal(rawJsonFloor('FP32', Buffer.alloc(40)), 20);
  t.equal(rawJsonFloor('BYTES', Buffer.alloc(40)), 40);
});
