// Strided, batched GEMM with an optional reduction over a second batch axis:
//
//   C[z] (+)= alpha * sum_{r < R} A[z, r] B[z, r],   A[z, r]: M x K,  B[z, r]: K x N,
//
// where every operand is addressed by explicit strides, so transposes, shared operands,
// grouped convolutions and per-example products are all the same kernel. The batch index z
// splits as (z1, z2) = (z / G, z % G) so that two batch axes (example, group) can have
// unrelated strides.
//
// Tiling (entry `gemm`): 64 x 64 output tile per workgroup of 16 x 16 threads, each thread
// holding a 4 x 4 register block (rows ty + 16 i, columns tx + 16 j, conflict-free
// shared-memory reads); K is staged through shared memory 16 at a time. Entry `gemm128`: a
// 128 x 128 tile with 8 x 8 blocks per thread and K staged 8 at a time, twice the arithmetic
// per shared-memory read, for products whose M and N are both at least 128.
//
// Parameters:
//   p[0] M, p[1] N, p[2] K, p[3] R, p[4] G, p[5] z offset, p[6] accumulate, p[7] alpha bits,
//   p[8..14]  A: offset, stride z1, stride z2, stride r, stride m, stride k
//   p[16..22] B: offset, stride z1, stride z2, stride r, stride k, stride n
//   p[24..29] C: offset, stride z1, stride z2, stride m, stride n

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<array<f32, 64>, 16>; // [k][m]
var<workgroup> Bs: array<array<f32, 64>, 16>; // [k][n]

@compute @workgroup_size(16, 16, 1)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let M = p[0]; let N = p[1]; let K = p[2]; let R = p[3]; let G = p[4];
    let z = wid.z + p[5];
    let z1 = z / G;
    let z2 = z % G;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid3.x;
    let ty = lid3.y;
    let a_base = p[8] + z1 * p[9] + z2 * p[10];
    let b_base = p[16] + z1 * p[17] + z2 * p[18];
    let sam = p[12]; let sak = p[13];
    let sbk = p[20]; let sbn = p[21];
    // Load along whichever operand axis is contiguous.
    let a_m_fast = sam == 1u;
    let b_n_fast = sbn == 1u;

    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = 0.0; } }

    for (var r = 0u; r < R; r++) {
        let a_r = a_base + r * p[11];
        let b_r = b_base + r * p[19];
        for (var k0 = 0u; k0 < K; k0 += BK) {
            for (var q = 0u; q < 4u; q++) {
                let e = lid + 256u * q;
                var ml: u32; var kl: u32;
                if a_m_fast { ml = e % BM; kl = e / BM; } else { kl = e % BK; ml = e / BK; }
                let m = m0 + ml; let k = k0 + kl;
                var v = 0.0;
                if m < M && k < K { v = A[a_r + m * sam + k * sak]; }
                As[kl][ml] = v;
                var nl: u32; var kb: u32;
                if b_n_fast { nl = e % BN; kb = e / BN; } else { kb = e % BK; nl = e / BK; }
                let n = n0 + nl; let kk = k0 + kb;
                var w = 0.0;
                if n < N && kk < K { w = B[b_r + kk * sbk + n * sbn]; }
                Bs[kb][nl] = w;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < BK; kk++) {
                var av: array<f32, 4>;
                var bv: array<f32, 4>;
                for (var i = 0u; i < 4u; i++) { av[i] = As[kk][ty + 16u * i]; }
                for (var j = 0u; j < 4u; j++) { bv[j] = Bs[kk][tx + 16u * j]; }
                for (var i = 0u; i < 4u; i++) {
                    for (var j = 0u; j < 4u; j++) {
                        acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                    }
                }
            }
            workgroupBarrier();
        }
    }

    let alpha = bitcast<f32>(p[7]);
    let c_base = p[24] + z1 * p[25] + z2 * p[26];
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty + 16u * i;
        if m >= M { continue; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + tx + 16u * j;
            if n >= N { continue; }
            let c = c_base + m * p[27] + n * p[28];
            if p[6] != 0u {
                C[c] = C[c] + alpha * acc[i][j];
            } else {
                C[c] = alpha * acc[i][j];
            }
        }
    }
}

var<workgroup> As8: array<array<f32, 128>, 8>; // [k][m]
var<workgroup> Bs8: array<array<f32, 128>, 8>; // [k][n]

@compute @workgroup_size(16, 16, 1)
fn gemm128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let M = p[0]; let N = p[1]; let K = p[2]; let R = p[3]; let G = p[4];
    let z = wid.z + p[5];
    let z1 = z / G;
    let z2 = z % G;
    let m0 = wid.y * 128u;
    let n0 = wid.x * 128u;
    let tx = lid3.x;
    let ty = lid3.y;
    let a_base = p[8] + z1 * p[9] + z2 * p[10];
    let b_base = p[16] + z1 * p[17] + z2 * p[18];
    let sam = p[12]; let sak = p[13];
    let sbk = p[20]; let sbn = p[21];
    let a_m_fast = sam == 1u;
    let b_n_fast = sbn == 1u;

    var acc: array<array<f32, 8>, 8>;
    for (var i = 0u; i < 8u; i++) { for (var j = 0u; j < 8u; j++) { acc[i][j] = 0.0; } }

    for (var r = 0u; r < R; r++) {
        let a_r = a_base + r * p[11];
        let b_r = b_base + r * p[19];
        for (var k0 = 0u; k0 < K; k0 += 8u) {
            for (var q = 0u; q < 4u; q++) {
                let e = lid + 256u * q;
                var ml: u32; var kl: u32;
                if a_m_fast { ml = e % 128u; kl = e / 128u; } else { kl = e % 8u; ml = e / 8u; }
                let m = m0 + ml; let k = k0 + kl;
                var v = 0.0;
                if m < M && k < K { v = A[a_r + m * sam + k * sak]; }
                As8[kl][ml] = v;
                var nl: u32; var kb: u32;
                if b_n_fast { nl = e % 128u; kb = e / 128u; } else { kb = e % 8u; nl = e / 8u; }
                let n = n0 + nl; let kk = k0 + kb;
                var w = 0.0;
                if n < N && kk < K { w = B[b_r + kk * sbk + n * sbn]; }
                Bs8[kb][nl] = w;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < 8u; kk++) {
                var av: array<f32, 8>;
                var bv: array<f32, 8>;
                for (var i = 0u; i < 8u; i++) { av[i] = As8[kk][ty + 16u * i]; }
                for (var j = 0u; j < 8u; j++) { bv[j] = Bs8[kk][tx + 16u * j]; }
                for (var i = 0u; i < 8u; i++) {
                    for (var j = 0u; j < 8u; j++) {
                        acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                    }
                }
            }
            workgroupBarrier();
        }
    }

    let alpha = bitcast<f32>(p[7]);
    let c_base = p[24] + z1 * p[25] + z2 * p[26];
    for (var i = 0u; i < 8u; i++) {
        let m = m0 + ty + 16u * i;
        if m >= M { continue; }
        for (var j = 0u; j < 8u; j++) {
            let n = n0 + tx + 16u * j;
            if n >= N { continue; }
            let c = c_base + m * p[27] + n * p[28];
            if p[6] != 0u {
                C[c] = C[c] + alpha * acc[i][j];
            } else {
                C[c] = alpha * acc[i][j];
            }
        }
    }
}
