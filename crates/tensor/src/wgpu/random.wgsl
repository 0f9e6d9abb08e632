// Gaussian samples from the counter-based Philox4x32-10 generator (Salmon et al., SC'11), so
// every thread computes its own values from (key, counter) and the stream does not depend on
// the launch shape. Must match `philox4x32_10` and `philox_normals` in ops/random.rs.
//
// Element e uses block e / 4 of the stream: counter = (block, 0, stream lo, stream hi),
// key = (key lo, key hi). The four words give two Box-Muller pairs.
//
// Parameters: p[0] n, p[1] key lo, p[2] key hi, p[3] stream lo, p[4] stream hi,
// p[5] mean bits, p[6] std bits.

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// 32 x 32 -> 64-bit product as (hi, lo), from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu; let ah = a >> 16u;
    let bl = b & 0xffffu; let bh = b >> 16u;
    let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var c = ctr_in;
    var k = key_in;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// (0, 1]: never 0, so the logarithm is finite; the smallest value 2^-33 bounds |z| by 6.77.
fn open01(w: u32) -> f32 { return (f32(w) + 0.5) * 2.3283064e-10; }
// [0, 1)
fn half01(w: u32) -> f32 { return f32(w >> 8u) * 5.9604645e-8; }

@compute @workgroup_size(256)
fn normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let blk = (wid.y * nwg.x + wid.x) * 256u + lid;
    let n = p[0];
    if blk * 4u >= n { return; }
    let w = philox(vec4<u32>(blk, 0u, p[3], p[4]), vec2<u32>(p[1], p[2]));
    let mean = bitcast<f32>(p[5]);
    let sd = bitcast<f32>(p[6]);
    let r0 = sqrt(-2.0 * log(open01(w.x)));
    let t0 = 6.2831855 * half01(w.y);
    let r1 = sqrt(-2.0 * log(open01(w.z)));
    let t1 = 6.2831855 * half01(w.w);
    let z = array<f32, 4>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1));
    for (var q = 0u; q < 4u; q++) {
        let e = blk * 4u + q;
        if e < n { out[e] = mean + sd * z[q]; }
    }
}
