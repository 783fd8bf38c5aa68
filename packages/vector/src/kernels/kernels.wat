;; @dreamdb/vector hot loops, hand-written in WebAssembly text with fixed-width SIMD
;; (the SIMD proposal as shipped in V8 >= 9.1, so Node.js 20 runs it without flags).
;;
;; scripts/build-wasm.mjs assembles this file with wabt (npm `wabt`) into
;; src/kernels/kernels-wasm.js at build and test time; nothing binary is committed.
;; src/kernels/js.ts implements every function below in plain TypeScript on the same
;; memory layout, and test/kernels.test.ts checks that both give identical results
;; (integers exactly, floats bit for bit: every float operation here is one IEEE
;; operation on f32 that the TypeScript twin performs in the same order).
;;
;; All pointers are byte offsets into the exported memory; the caller lays it out.

(module
  (memory (export "memory") 1)

  ;; FastScan: estimate <b, q> for blocks of 32 one-bit codes at once.
  ;;
  ;; A block holds 32 codes of `groups` nibbles each (groups = paddedDim / 4, a
  ;; multiple of 16). Group g takes 16 bytes: byte j holds the nibble of code j in its
  ;; low 4 bits and the nibble of code j + 16 in its high 4 bits. A nibble's bit t is
  ;; dimension 4g + t. `lut` holds 16 bytes per group: entry n is the sum of the
  ;; quantized query values of the dimensions whose bit is set in n (each <= 60).
  ;; `out` receives 32 little-endian u32 sums per block, in code order.
  ;;
  ;; Four lookups are summed in u8 (<= 240) before widening to u16; u16 lanes are
  ;; flushed to u32 every 1024 groups (256 sums of <= 240 fit in 65535). High nibbles are
  ;; taken with a 16-bit shift and the hoisted mask: V8 lowers i8x16.shr_u to the same shift
  ;; plus a mask rebuilt on every use.
  (func (export "fastscan")
    (param $codes i32) (param $nblocks i32) (param $lut i32) (param $groups i32) (param $out i32)
    (local $b i32) (local $g i32) (local $end i32) (local $cp i32) (local $lp i32)
    (local $c v128) (local $l v128) (local $slo v128) (local $shi v128) (local $mask v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $o0 v128) (local $o1 v128) (local $o2 v128) (local $o3 v128)
    (local $o4 v128) (local $o5 v128) (local $o6 v128) (local $o7 v128)
    (local.set $mask (i8x16.splat (i32.const 15)))
    (local.set $cp (local.get $codes))
    (block $blocks_done
      (loop $blocks
        (br_if $blocks_done (i32.ge_u (local.get $b) (local.get $nblocks)))
        (local.set $o0 (v128.const i32x4 0 0 0 0))
        (local.set $o1 (v128.const i32x4 0 0 0 0))
        (local.set $o2 (v128.const i32x4 0 0 0 0))
        (local.set $o3 (v128.const i32x4 0 0 0 0))
        (local.set $o4 (v128.const i32x4 0 0 0 0))
        (local.set $o5 (v128.const i32x4 0 0 0 0))
        (local.set $o6 (v128.const i32x4 0 0 0 0))
        (local.set $o7 (v128.const i32x4 0 0 0 0))
        (local.set $lp (local.get $lut))
        (local.set $g (i32.const 0))
        (block $chunks_done
          (loop $chunks
            (br_if $chunks_done (i32.ge_u (local.get $g) (local.get $groups)))
            (local.set $end (i32.add (local.get $g) (i32.const 1024)))
            (if (i32.gt_u (local.get $end) (local.get $groups))
              (then (local.set $end (local.get $groups))))
            (local.set $a0 (v128.const i32x4 0 0 0 0))
            (local.set $a1 (v128.const i32x4 0 0 0 0))
            (local.set $a2 (v128.const i32x4 0 0 0 0))
            (local.set $a3 (v128.const i32x4 0 0 0 0))
            (loop $inner
              ;; group g
              (local.set $c (v128.load (local.get $cp)))
              (local.set $l (v128.load (local.get $lp)))
              (local.set $slo (i8x16.swizzle (local.get $l) (v128.and (local.get $c) (local.get $mask))))
              (local.set $shi (i8x16.swizzle (local.get $l) (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask))))
              ;; group g + 1
              (local.set $c (v128.load offset=16 (local.get $cp)))
              (local.set $l (v128.load offset=16 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo)
                (i8x16.swizzle (local.get $l) (v128.and (local.get $c) (local.get $mask)))))
              (local.set $shi (i8x16.add (local.get $shi)
                (i8x16.swizzle (local.get $l) (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))))
              ;; group g + 2
              (local.set $c (v128.load offset=32 (local.get $cp)))
              (local.set $l (v128.load offset=32 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo)
                (i8x16.swizzle (local.get $l) (v128.and (local.get $c) (local.get $mask)))))
              (local.set $shi (i8x16.add (local.get $shi)
                (i8x16.swizzle (local.get $l) (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))))
              ;; group g + 3
              (local.set $c (v128.load offset=48 (local.get $cp)))
              (local.set $l (v128.load offset=48 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo)
                (i8x16.swizzle (local.get $l) (v128.and (local.get $c) (local.get $mask)))))
              (local.set $shi (i8x16.add (local.get $shi)
                (i8x16.swizzle (local.get $l) (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))))
              ;; widen the four-group sums into u16 lanes: codes 0-7, 8-15, 16-23, 24-31
              (local.set $a0 (i16x8.add (local.get $a0) (i16x8.extend_low_i8x16_u (local.get $slo))))
              (local.set $a1 (i16x8.add (local.get $a1) (i16x8.extend_high_i8x16_u (local.get $slo))))
              (local.set $a2 (i16x8.add (local.get $a2) (i16x8.extend_low_i8x16_u (local.get $shi))))
              (local.set $a3 (i16x8.add (local.get $a3) (i16x8.extend_high_i8x16_u (local.get $shi))))
              (local.set $cp (i32.add (local.get $cp) (i32.const 64)))
              (local.set $lp (i32.add (local.get $lp) (i32.const 64)))
              (local.set $g (i32.add (local.get $g) (i32.const 4)))
              (br_if $inner (i32.lt_u (local.get $g) (local.get $end))))
            (local.set $o0 (i32x4.add (local.get $o0) (i32x4.extend_low_i16x8_u (local.get $a0))))
            (local.set $o1 (i32x4.add (local.get $o1) (i32x4.extend_high_i16x8_u (local.get $a0))))
            (local.set $o2 (i32x4.add (local.get $o2) (i32x4.extend_low_i16x8_u (local.get $a1))))
            (local.set $o3 (i32x4.add (local.get $o3) (i32x4.extend_high_i16x8_u (local.get $a1))))
            (local.set $o4 (i32x4.add (local.get $o4) (i32x4.extend_low_i16x8_u (local.get $a2))))
            (local.set $o5 (i32x4.add (local.get $o5) (i32x4.extend_high_i16x8_u (local.get $a2))))
            (local.set $o6 (i32x4.add (local.get $o6) (i32x4.extend_low_i16x8_u (local.get $a3))))
            (local.set $o7 (i32x4.add (local.get $o7) (i32x4.extend_high_i16x8_u (local.get $a3))))
            (br $chunks)))
        (v128.store (local.get $out) (local.get $o0))
        (v128.store offset=16 (local.get $out) (local.get $o1))
        (v128.store offset=32 (local.get $out) (local.get $o2))
        (v128.store offset=48 (local.get $out) (local.get $o3))
        (v128.store offset=64 (local.get $out) (local.get $o4))
        (v128.store offset=80 (local.get $out) (local.get $o5))
        (v128.store offset=96 (local.get $out) (local.get $o6))
        (v128.store offset=112 (local.get $out) (local.get $o7))
        (local.set $out (i32.add (local.get $out) (i32.const 128)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $blocks))))

  ;; FastScan for two queries at once: `fastscan` for `lut` into `out` and for `lut2` into
  ;; `out2` (the same sums, exactly), reading each group of codes and splitting it into nibble
  ;; indices once for both tables. searchMany scans a list for every query of a batch that
  ;; probes it; the codes' loads and masks were a third of a lookup's instructions. The u32
  ;; sums are added up in memory (zeroed first, one flush per 1024 groups), which leaves the
  ;; registers to the two queries' byte and u16 sums.
  (func (export "fastscan2")
    (param $codes i32) (param $nblocks i32) (param $lut i32) (param $lut2 i32) (param $groups i32)
    (param $out i32) (param $out2 i32)
    (local $b i32) (local $g i32) (local $end i32) (local $cp i32) (local $lp i32) (local $lp2 i32)
    (local $c v128) (local $l v128) (local $ilo v128) (local $ihi v128) (local $mask v128)
    (local $slo v128) (local $shi v128) (local $tlo v128) (local $thi v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local.set $mask (i8x16.splat (i32.const 15)))
    (local.set $cp (local.get $codes))
    (block $blocks_done
      (loop $blocks
        (br_if $blocks_done (i32.ge_u (local.get $b) (local.get $nblocks)))
        (v128.store (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=16 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=32 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=48 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=64 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=80 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=96 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store offset=112 (local.get $out) (v128.const i32x4 0 0 0 0))
        (v128.store (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=16 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=32 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=48 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=64 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=80 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=96 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (v128.store offset=112 (local.get $out2) (v128.const i32x4 0 0 0 0))
        (local.set $lp (local.get $lut))
        (local.set $lp2 (local.get $lut2))
        (local.set $g (i32.const 0))
        (block $chunks_done
          (loop $chunks
            (br_if $chunks_done (i32.ge_u (local.get $g) (local.get $groups)))
            (local.set $end (i32.add (local.get $g) (i32.const 1024)))
            (if (i32.gt_u (local.get $end) (local.get $groups))
              (then (local.set $end (local.get $groups))))
            (local.set $a0 (v128.const i32x4 0 0 0 0))
            (local.set $a1 (v128.const i32x4 0 0 0 0))
            (local.set $a2 (v128.const i32x4 0 0 0 0))
            (local.set $a3 (v128.const i32x4 0 0 0 0))
            (local.set $b0 (v128.const i32x4 0 0 0 0))
            (local.set $b1 (v128.const i32x4 0 0 0 0))
            (local.set $b2 (v128.const i32x4 0 0 0 0))
            (local.set $b3 (v128.const i32x4 0 0 0 0))
            (loop $inner
              ;; groups g .. g + 3: byte sums (<= 240) for both tables
              (local.set $c (v128.load (local.get $cp)))
              (local.set $ilo (v128.and (local.get $c) (local.get $mask)))
              (local.set $ihi (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))
              (local.set $l (v128.load (local.get $lp)))
              (local.set $slo (i8x16.swizzle (local.get $l) (local.get $ilo)))
              (local.set $shi (i8x16.swizzle (local.get $l) (local.get $ihi)))
              (local.set $l (v128.load (local.get $lp2)))
              (local.set $tlo (i8x16.swizzle (local.get $l) (local.get $ilo)))
              (local.set $thi (i8x16.swizzle (local.get $l) (local.get $ihi)))
              (local.set $c (v128.load offset=16 (local.get $cp)))
              (local.set $ilo (v128.and (local.get $c) (local.get $mask)))
              (local.set $ihi (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))
              (local.set $l (v128.load offset=16 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $shi (i8x16.add (local.get $shi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              (local.set $l (v128.load offset=16 (local.get $lp2)))
              (local.set $tlo (i8x16.add (local.get $tlo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $thi (i8x16.add (local.get $thi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              (local.set $c (v128.load offset=32 (local.get $cp)))
              (local.set $ilo (v128.and (local.get $c) (local.get $mask)))
              (local.set $ihi (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))
              (local.set $l (v128.load offset=32 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $shi (i8x16.add (local.get $shi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              (local.set $l (v128.load offset=32 (local.get $lp2)))
              (local.set $tlo (i8x16.add (local.get $tlo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $thi (i8x16.add (local.get $thi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              (local.set $c (v128.load offset=48 (local.get $cp)))
              (local.set $ilo (v128.and (local.get $c) (local.get $mask)))
              (local.set $ihi (v128.and (i16x8.shr_u (local.get $c) (i32.const 4)) (local.get $mask)))
              (local.set $l (v128.load offset=48 (local.get $lp)))
              (local.set $slo (i8x16.add (local.get $slo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $shi (i8x16.add (local.get $shi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              (local.set $l (v128.load offset=48 (local.get $lp2)))
              (local.set $tlo (i8x16.add (local.get $tlo) (i8x16.swizzle (local.get $l) (local.get $ilo))))
              (local.set $thi (i8x16.add (local.get $thi) (i8x16.swizzle (local.get $l) (local.get $ihi))))
              ;; widen into u16 lanes: codes 0-7, 8-15, 16-23, 24-31
              (local.set $a0 (i16x8.add (local.get $a0) (i16x8.extend_low_i8x16_u (local.get $slo))))
              (local.set $a1 (i16x8.add (local.get $a1) (i16x8.extend_high_i8x16_u (local.get $slo))))
              (local.set $a2 (i16x8.add (local.get $a2) (i16x8.extend_low_i8x16_u (local.get $shi))))
              (local.set $a3 (i16x8.add (local.get $a3) (i16x8.extend_high_i8x16_u (local.get $shi))))
              (local.set $b0 (i16x8.add (local.get $b0) (i16x8.extend_low_i8x16_u (local.get $tlo))))
              (local.set $b1 (i16x8.add (local.get $b1) (i16x8.extend_high_i8x16_u (local.get $tlo))))
              (local.set $b2 (i16x8.add (local.get $b2) (i16x8.extend_low_i8x16_u (local.get $thi))))
              (local.set $b3 (i16x8.add (local.get $b3) (i16x8.extend_high_i8x16_u (local.get $thi))))
              (local.set $cp (i32.add (local.get $cp) (i32.const 64)))
              (local.set $lp (i32.add (local.get $lp) (i32.const 64)))
              (local.set $lp2 (i32.add (local.get $lp2) (i32.const 64)))
              (local.set $g (i32.add (local.get $g) (i32.const 4)))
              (br_if $inner (i32.lt_u (local.get $g) (local.get $end))))
            (v128.store (local.get $out) (i32x4.add (v128.load (local.get $out)) (i32x4.extend_low_i16x8_u (local.get $a0))))
            (v128.store offset=16 (local.get $out) (i32x4.add (v128.load offset=16 (local.get $out)) (i32x4.extend_high_i16x8_u (local.get $a0))))
            (v128.store offset=32 (local.get $out) (i32x4.add (v128.load offset=32 (local.get $out)) (i32x4.extend_low_i16x8_u (local.get $a1))))
            (v128.store offset=48 (local.get $out) (i32x4.add (v128.load offset=48 (local.get $out)) (i32x4.extend_high_i16x8_u (local.get $a1))))
            (v128.store offset=64 (local.get $out) (i32x4.add (v128.load offset=64 (local.get $out)) (i32x4.extend_low_i16x8_u (local.get $a2))))
            (v128.store offset=80 (local.get $out) (i32x4.add (v128.load offset=80 (local.get $out)) (i32x4.extend_high_i16x8_u (local.get $a2))))
            (v128.store offset=96 (local.get $out) (i32x4.add (v128.load offset=96 (local.get $out)) (i32x4.extend_low_i16x8_u (local.get $a3))))
            (v128.store offset=112 (local.get $out) (i32x4.add (v128.load offset=112 (local.get $out)) (i32x4.extend_high_i16x8_u (local.get $a3))))
            (v128.store (local.get $out2) (i32x4.add (v128.load (local.get $out2)) (i32x4.extend_low_i16x8_u (local.get $b0))))
            (v128.store offset=16 (local.get $out2) (i32x4.add (v128.load offset=16 (local.get $out2)) (i32x4.extend_high_i16x8_u (local.get $b0))))
            (v128.store offset=32 (local.get $out2) (i32x4.add (v128.load offset=32 (local.get $out2)) (i32x4.extend_low_i16x8_u (local.get $b1))))
            (v128.store offset=48 (local.get $out2) (i32x4.add (v128.load offset=48 (local.get $out2)) (i32x4.extend_high_i16x8_u (local.get $b1))))
            (v128.store offset=64 (local.get $out2) (i32x4.add (v128.load offset=64 (local.get $out2)) (i32x4.extend_low_i16x8_u (local.get $b2))))
            (v128.store offset=80 (local.get $out2) (i32x4.add (v128.load offset=80 (local.get $out2)) (i32x4.extend_high_i16x8_u (local.get $b2))))
            (v128.store offset=96 (local.get $out2) (i32x4.add (v128.load offset=96 (local.get $out2)) (i32x4.extend_low_i16x8_u (local.get $b3))))
            (v128.store offset=112 (local.get $out2) (i32x4.add (v128.load offset=112 (local.get $out2)) (i32x4.extend_high_i16x8_u (local.get $b3))))
            (br $chunks)))
        (local.set $out (i32.add (local.get $out) (i32.const 128)))
        (local.set $out2 (i32.add (local.get $out2) (i32.const 128)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $blocks))))

  ;; The query's side of the coarse probe (index-memory.ts, #probe): `n` f32 values at `x`
  ;; (n a multiple of 8) rounded to i16 at `out`, out_j = nearest(x_j * inv) (ties to even),
  ;; where m = max |x_j| and inv = qmax / m (0 when m is 0), both f32, written to stats[0] (m)
  ;; and stats[1] (inv).
  (func (export "quant16") (param $x i32) (param $n i32) (param $qmax f32) (param $out i32) (param $stats i32)
    (local $p i32) (local $end i32) (local $m v128) (local $inv v128) (local $mf f32) (local $invf f32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $p (local.get $x))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $next)))
    (local.set $mf (f32.max
      (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
      (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
    (if (f32.gt (local.get $mf) (f32.const 0))
      (then (local.set $invf (f32.div (local.get $qmax) (local.get $mf)))))
    (f32.store (local.get $stats) (local.get $mf))
    (f32.store offset=4 (local.get $stats) (local.get $invf))
    (local.set $inv (f32x4.splat (local.get $invf)))
    (local.set $p (local.get $x))
    (block $done2
      (loop $next2
        (br_if $done2 (i32.ge_u (local.get $p) (local.get $end)))
        (v128.store (local.get $out) (i16x8.narrow_i32x4_s
          (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load (local.get $p)) (local.get $inv))))
          (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $inv))))))
        (local.set $p (i32.add (local.get $p) (i32.const 32)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $next2))))

  ;; out[r] = sum_j x_j * row_r,j (f64, exact) for `count` consecutive rows of n i16 values each
  ;; (n a multiple of 8) against the i16 row at `x`, four rows at a time (each x load serves
  ;; four); the caller keeps |x_j| * |row_j| * n / 4 under 2^31, so no i32 lane overflows, and
  ;; the four lanes are added in f64.
  (func (export "dots16") (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $out i32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $q v128)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 1)))
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (local.set $p0 (local.get $rows))
        (local.set $p1 (i32.add (local.get $p0) (local.get $bytes)))
        (local.set $p2 (i32.add (local.get $p1) (local.get $bytes)))
        (local.set $p3 (i32.add (local.get $p2) (local.get $bytes)))
        (local.set $s0 (v128.const i32x4 0 0 0 0))
        (local.set $s1 (v128.const i32x4 0 0 0 0))
        (local.set $s2 (v128.const i32x4 0 0 0 0))
        (local.set $s3 (v128.const i32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $s0 (i32x4.add (local.get $s0)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $q))))
            (local.set $s1 (i32x4.add (local.get $s1)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $q))))
            (local.set $s2 (i32x4.add (local.get $s2)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $q))))
            (local.set $s3 (i32x4.add (local.get $s3)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $q))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step)))
        (f64.store (local.get $out) (call $sum4 (local.get $s0)))
        (f64.store offset=8 (local.get $out) (call $sum4 (local.get $s1)))
        (f64.store offset=16 (local.get $out) (call $sum4 (local.get $s2)))
        (f64.store offset=24 (local.get $out) (call $sum4 (local.get $s3)))
        (local.set $rows (i32.add (local.get $rows) (i32.shl (local.get $bytes) (i32.const 2))))
        (local.set $out (i32.add (local.get $out) (i32.const 32)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    (block $rest_done
      (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $s0 (v128.const i32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        (block $done1
          (loop $step1
            (br_if $done1 (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $s0 (i32x4.add (local.get $s0)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $rows) (local.get $j)))
                (v128.load (i32.add (local.get $x) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step1)))
        (f64.store (local.get $out) (call $sum4 (local.get $s0)))
        (local.set $rows (i32.add (local.get $rows) (local.get $bytes)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rest))))

  (func $sum4 (param $s v128) (result f64)
    (f64.add
      (f64.add (f64.convert_i32_s (i32x4.extract_lane 0 (local.get $s)))
        (f64.convert_i32_s (i32x4.extract_lane 1 (local.get $s))))
      (f64.add (f64.convert_i32_s (i32x4.extract_lane 2 (local.get $s)))
        (f64.convert_i32_s (i32x4.extract_lane 3 (local.get $s))))))

  ;; The query side of FastScan for one probed list, from the rotated query `rq` and the list's
  ;; rotated centroid `rc` (f32, `dim` values, a multiple of 64), all in f64 so that the
  ;; TypeScript twin needs no rounding steps:
  ;;   q'_j = rq_j - rc_j, written to `qp` (f64) for the extra-bit pass;
  ;;   stats[0] = |q'|^2 (even and odd j summed apart, then added), stats[1] = lo = min q'_j,
  ;;   stats[2] = delta = (hi - lo) / 15 with hi = max q'_j, stats[3] = sum of x_j, stats[4] = hi, where
  ;;   x_j = min(15, floor((q'_j - lo) * (1 / delta) + dither_j)) is q' rounded to 4 bits at random
  ;;   (dither: f64 in [0, 1)), or 0 when delta = 0;
  ;; and `lut`, 16 bytes per group of 4 dimensions: entry n sums x_(4g+t) over the bits t set in
  ;; n, built with four masked splats instead of 15 dependent additions.
  (func (export "lut4")
    (param $rq i32) (param $rc i32) (param $dim i32) (param $dither i32) (param $qp i32) (param $lut i32)
    (param $stats i32)
    (local $j i32) (local $v v128) (local $sq v128) (local $lov v128) (local $hiv v128)
    (local $lo f64) (local $hi f64) (local $t f64) (local $delta f64)
    (local $x01 v128) (local $x23 v128) (local $sum v128) (local $m15 v128)
    (local.set $sq (v128.const f64x2 0 0))
    (local.set $lov (v128.const f64x2 inf inf))
    (local.set $hiv (v128.const f64x2 -inf -inf))
    (loop $residual
      (local.set $v (f64x2.sub
        (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $rq) (i32.shl (local.get $j) (i32.const 2)))))
        (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $rc) (i32.shl (local.get $j) (i32.const 2)))))))
      (v128.store (i32.add (local.get $qp) (i32.shl (local.get $j) (i32.const 3))) (local.get $v))
      (local.set $sq (f64x2.add (local.get $sq) (f64x2.mul (local.get $v) (local.get $v))))
      ;; pmin(a, b) = b < a ? b : a, the same comparison the TypeScript twin makes
      (local.set $lov (f64x2.pmin (local.get $lov) (local.get $v)))
      (local.set $hiv (f64x2.pmax (local.get $hiv) (local.get $v)))
      (local.set $j (i32.add (local.get $j) (i32.const 2)))
      (br_if $residual (i32.lt_u (local.get $j) (local.get $dim))))
    (local.set $lo (f64x2.extract_lane 0 (local.get $lov)))
    (local.set $t (f64x2.extract_lane 1 (local.get $lov)))
    (if (f64.lt (local.get $t) (local.get $lo)) (then (local.set $lo (local.get $t))))
    (local.set $hi (f64x2.extract_lane 0 (local.get $hiv)))
    (local.set $t (f64x2.extract_lane 1 (local.get $hiv)))
    (if (f64.lt (local.get $hi) (local.get $t)) (then (local.set $hi (local.get $t))))
    (local.set $delta (f64.div (f64.sub (local.get $hi) (local.get $lo)) (f64.const 15)))
    (f64.store (local.get $stats)
      (f64.add (f64x2.extract_lane 0 (local.get $sq)) (f64x2.extract_lane 1 (local.get $sq))))
    (f64.store offset=8 (local.get $stats) (local.get $lo))
    (f64.store offset=16 (local.get $stats) (local.get $delta))
    (f64.store offset=32 (local.get $stats) (local.get $hi))
    (local.set $sum (v128.const i32x4 0 0 0 0))
    (local.set $j (i32.const 0))
    (if (f64.gt (local.get $delta) (f64.const 0))
      (then
        (local.set $lov (f64x2.splat (local.get $lo)))
        ;; one division, not one per dimension
        (local.set $hiv (f64x2.splat (f64.div (f64.const 1) (local.get $delta))))
        (local.set $m15 (v128.const f64x2 15 15))
        (loop $groups
          (local.set $x01 (i32x4.trunc_sat_f64x2_s_zero (f64x2.pmin (local.get $m15) (f64x2.floor (f64x2.add
            (f64x2.mul (f64x2.sub (v128.load (i32.add (local.get $qp) (i32.shl (local.get $j) (i32.const 3))))
              (local.get $lov)) (local.get $hiv))
            (v128.load (i32.add (local.get $dither) (i32.shl (local.get $j) (i32.const 3)))))))))
          (local.set $x23 (i32x4.trunc_sat_f64x2_s_zero (f64x2.pmin (local.get $m15) (f64x2.floor (f64x2.add
            (f64x2.mul (f64x2.sub (v128.load offset=16 (i32.add (local.get $qp) (i32.shl (local.get $j) (i32.const 3))))
              (local.get $lov)) (local.get $hiv))
            (v128.load offset=16 (i32.add (local.get $dither) (i32.shl (local.get $j) (i32.const 3)))))))))
          (local.set $sum (i32x4.add (local.get $sum) (i32x4.add (local.get $x01) (local.get $x23))))
          ;; entry n = x0 [n & 1] + x1 [n & 2] + x2 [n & 4] + x3 [n & 8] (each <= 15, sums <= 60)
          (v128.store (local.get $lut)
            (i8x16.add
              (i8x16.add
                (v128.and (i8x16.splat (i32x4.extract_lane 0 (local.get $x01)))
                  (v128.const i8x16 0 255 0 255 0 255 0 255 0 255 0 255 0 255 0 255))
                (v128.and (i8x16.splat (i32x4.extract_lane 1 (local.get $x01)))
                  (v128.const i8x16 0 0 255 255 0 0 255 255 0 0 255 255 0 0 255 255)))
              (i8x16.add
                (v128.and (i8x16.splat (i32x4.extract_lane 0 (local.get $x23)))
                  (v128.const i8x16 0 0 0 0 255 255 255 255 0 0 0 0 255 255 255 255))
                (v128.and (i8x16.splat (i32x4.extract_lane 1 (local.get $x23)))
                  (v128.const i8x16 0 0 0 0 0 0 0 0 255 255 255 255 255 255 255 255)))))
          (local.set $lut (i32.add (local.get $lut) (i32.const 16)))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br_if $groups (i32.lt_u (local.get $j) (local.get $dim)))))
      (else
        (loop $zeros
          (v128.store (local.get $lut) (v128.const i32x4 0 0 0 0))
          (local.set $lut (i32.add (local.get $lut) (i32.const 16)))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br_if $zeros (i32.lt_u (local.get $j) (local.get $dim))))))
    (f64.store offset=24 (local.get $stats) (f64.convert_i32_u (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $sum)) (i32x4.extract_lane 1 (local.get $sum)))
      (i32.add (i32x4.extract_lane 2 (local.get $sum)) (i32x4.extract_lane 3 (local.get $sum)))))))

  ;; The 8-bit query for the extra-bit estimate of one list, from q' (f64 at `qp`, `dim` values,
  ;; a multiple of 64) and the lo and hi `lut4` left in stats[1] and stats[4]:
  ;; x_j = min(255, floor((q'_j - lo) * (1 / delta) + dither_j)) with delta = (hi - lo) / 255
  ;; (x = 0 when delta = 0), written as 8 bit planes `stride` bytes apart at `planes` (plane p,
  ;; byte j / 8, bit j % 8 holds bit p of x_j; bytes past dim / 8 are left alone);
  ;; stats[5] = delta, stats[6] = sum of x_j. Sixteen dimensions a step: their x narrowed to
  ;; bytes, and each plane's 16 bits taken with one bitmask.
  (func (export "planes8")
    (param $qp i32) (param $dim i32) (param $dither i32) (param $planes i32) (param $stride i32)
    (param $stats i32)
    (local $j i32) (local $p i32) (local $at i32) (local $lo f64) (local $delta f64)
    (local $lov v128) (local $inv v128) (local $max v128) (local $x v128) (local $sum v128)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $lo (f64.load offset=8 (local.get $stats)))
    (local.set $delta (f64.div (f64.sub (f64.load offset=32 (local.get $stats)) (local.get $lo)) (f64.const 255)))
    (f64.store offset=40 (local.get $stats) (local.get $delta))
    (local.set $lov (f64x2.splat (local.get $lo)))
    (local.set $inv (f64x2.splat (f64.div (f64.const 1) (local.get $delta))))
    (local.set $max (v128.const f64x2 255 255))
    (local.set $sum (v128.const i32x4 0 0 0 0))
    (loop $step
      (if (f64.gt (local.get $delta) (f64.const 0))
        (then
          (local.set $at (i32.add (local.get $qp) (i32.shl (local.get $j) (i32.const 3))))
          (local.set $p (i32.add (local.get $dither) (i32.shl (local.get $j) (i32.const 3))))
          ;; four pairs of x_j at a time, each pair two i32 lanes, joined into one i32x4
          (local.set $a (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (call $round8 (v128.load (local.get $at)) (v128.load (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))
            (call $round8 (v128.load offset=16 (local.get $at)) (v128.load offset=16 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))))
          (local.set $b (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (call $round8 (v128.load offset=32 (local.get $at)) (v128.load offset=32 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))
            (call $round8 (v128.load offset=48 (local.get $at)) (v128.load offset=48 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))))
          (local.set $c (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (call $round8 (v128.load offset=64 (local.get $at)) (v128.load offset=64 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))
            (call $round8 (v128.load offset=80 (local.get $at)) (v128.load offset=80 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))))
          (local.set $d (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (call $round8 (v128.load offset=96 (local.get $at)) (v128.load offset=96 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))
            (call $round8 (v128.load offset=112 (local.get $at)) (v128.load offset=112 (local.get $p)) (local.get $lov) (local.get $inv) (local.get $max))))
          (local.set $sum (i32x4.add (local.get $sum)
            (i32x4.add (i32x4.add (local.get $a) (local.get $b)) (i32x4.add (local.get $c) (local.get $d)))))
          (local.set $x (i8x16.narrow_i16x8_u
            (i16x8.narrow_i32x4_u (local.get $a) (local.get $b))
            (i16x8.narrow_i32x4_u (local.get $c) (local.get $d)))))
        (else (local.set $x (v128.const i32x4 0 0 0 0))))
      ;; plane p: bit p of each byte moved to the top, where bitmask reads it (a 16-bit shift
      ;; moves the same bit there in both bytes of a lane, without the mask V8 adds to i8x16.shl)
      (local.set $at (i32.add (local.get $planes) (i32.shr_u (local.get $j) (i32.const 3))))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 7))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 6))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 5))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 4))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 3))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 2))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (i16x8.shl (local.get $x) (i32.const 1))))
      (local.set $at (i32.add (local.get $at) (local.get $stride)))
      (i32.store16 (local.get $at) (i8x16.bitmask (local.get $x)))
      (local.set $j (i32.add (local.get $j) (i32.const 16)))
      (br_if $step (i32.lt_u (local.get $j) (local.get $dim))))
    (f64.store offset=48 (local.get $stats) (f64.convert_i32_u (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $sum)) (i32x4.extract_lane 1 (local.get $sum)))
      (i32.add (i32x4.extract_lane 2 (local.get $sum)) (i32x4.extract_lane 3 (local.get $sum)))))))

  ;; min(255, floor((q - lo) * inv + dither)) of two f64 lanes, as i32 lanes 0 and 1.
  (func $round8 (param $q v128) (param $dither v128) (param $lo v128) (param $inv v128) (param $max v128)
    (result v128)
    (i32x4.trunc_sat_f64x2_s_zero (f64x2.pmin (local.get $max) (f64x2.floor (f64x2.add
      (f64x2.mul (f64x2.sub (local.get $q) (local.get $lo)) (local.get $inv)) (local.get $dither))))))

  ;; The 1-bit estimates and error bounds of `count` vectors of one list, from their FastScan
  ;; sums (u32 at `sums`, as `fastscan` writes them), and the screen against the current k-th
  ;; distance, so that only the vectors that can still make the top k go back to JavaScript.
  ;; Factors lie in blocks of 32 vectors at `factors`, 512 bytes per block: 32 f32 each of
  ;; add, scale, err and pop (see index-memory.ts for what they hold). With the per-list
  ;; constants p = params (f64: a, b, c, offset, e, f, threshold), in f64 and in this order:
  ;;   est   = (add + p.offset) + scale * ((p.a * pop + p.b * sum) + p.c)
  ;;   bound = sqrt((err * err) * p.e + (scale * scale) * p.f)
  ;; writes every vector with est - bound < p.threshold, in order: its position (u32 at
  ;; `idx`), est and bound (f64 at `est` and `bound`); returns how many. Vectors are taken two
  ;; at a time (f64x2); the block's padding past `count` is never written out.
  (func (export "screen")
    (param $sums i32) (param $factors i32) (param $count i32) (param $params i32) (param $idx i32)
    (param $est i32) (param $bound i32) (result i32)
    (local $v i32) (local $n i32) (local $f i32) (local $mask i32)
    (local $a v128) (local $b v128) (local $c v128) (local $off v128) (local $e v128) (local $ff v128)
    (local $thr v128) (local $scale v128) (local $err v128) (local $x v128) (local $bnd v128)
    (local.set $a (v128.load64_splat (local.get $params)))
    (local.set $b (v128.load64_splat offset=8 (local.get $params)))
    (local.set $c (v128.load64_splat offset=16 (local.get $params)))
    (local.set $off (v128.load64_splat offset=24 (local.get $params)))
    (local.set $e (v128.load64_splat offset=32 (local.get $params)))
    (local.set $ff (v128.load64_splat offset=40 (local.get $params)))
    (local.set $thr (v128.load64_splat offset=48 (local.get $params)))
    (block $done
      (loop $pairs
        (br_if $done (i32.ge_u (local.get $v) (local.get $count)))
        (local.set $f (i32.add (local.get $factors) (i32.add
          (i32.shl (i32.shr_u (local.get $v) (i32.const 5)) (i32.const 9))
          (i32.shl (i32.and (local.get $v) (i32.const 31)) (i32.const 2)))))
        (local.set $scale (f64x2.promote_low_f32x4 (v128.load64_zero offset=128 (local.get $f))))
        (local.set $err (f64x2.promote_low_f32x4 (v128.load64_zero offset=256 (local.get $f))))
        (local.set $x (f64x2.add
          (f64x2.add (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $f))) (local.get $off))
          (f64x2.mul (local.get $scale) (f64x2.add
            (f64x2.add
              (f64x2.mul (local.get $a) (f64x2.promote_low_f32x4 (v128.load64_zero offset=384 (local.get $f))))
              (f64x2.mul (local.get $b) (f64x2.convert_low_i32x4_u
                (v128.load64_zero (i32.add (local.get $sums) (i32.shl (local.get $v) (i32.const 2)))))))
            (local.get $c)))))
        (local.set $bnd (f64x2.sqrt (f64x2.add
          (f64x2.mul (f64x2.mul (local.get $err) (local.get $err)) (local.get $e))
          (f64x2.mul (f64x2.mul (local.get $scale) (local.get $scale)) (local.get $ff)))))
        (local.set $mask (i64x2.bitmask (f64x2.lt (f64x2.sub (local.get $x) (local.get $bnd)) (local.get $thr))))
        (if (local.get $mask)
          (then
            (if (i32.and (local.get $mask) (i32.const 1))
              (then
                (i32.store (i32.add (local.get $idx) (i32.shl (local.get $n) (i32.const 2))) (local.get $v))
                (f64.store (i32.add (local.get $est) (i32.shl (local.get $n) (i32.const 3)))
                  (f64x2.extract_lane 0 (local.get $x)))
                (f64.store (i32.add (local.get $bound) (i32.shl (local.get $n) (i32.const 3)))
                  (f64x2.extract_lane 0 (local.get $bnd)))
                (local.set $n (i32.add (local.get $n) (i32.const 1)))))
            (if (i32.and (i32.ge_u (local.get $mask) (i32.const 2))
                  (i32.lt_u (i32.add (local.get $v) (i32.const 1)) (local.get $count)))
              (then
                (i32.store (i32.add (local.get $idx) (i32.shl (local.get $n) (i32.const 2)))
                  (i32.add (local.get $v) (i32.const 1)))
                (f64.store (i32.add (local.get $est) (i32.shl (local.get $n) (i32.const 3)))
                  (f64x2.extract_lane 1 (local.get $x)))
                (f64.store (i32.add (local.get $bound) (i32.shl (local.get $n) (i32.const 3)))
                  (f64x2.extract_lane 1 (local.get $bnd)))
                (local.set $n (i32.add (local.get $n) (i32.const 1)))))))
        (local.set $v (i32.add (local.get $v) (i32.const 2)))
        (br $pairs)))
    (local.get $n))

;; Elkan's candidate scan for one k-means vector: every list l < `lists`, l != `skip`, with
  ;;   u > gaps[l]  and  u + drift[l] > lower[l]
  ;; (gaps and lower f32, drift f64, compared in f64 as JavaScript does), written in list order
  ;; as u32 at `out`; returns how many. Two lists at a time (f64x2); with an odd `lists` it
  ;; reads one f32 past `lower` and `gaps` and one f64 past `drift` (the caller pads them), and
  ;; it may write up to two u32 past the last candidate (`out` holds lists + 1).
  (func $elkan (export "elkan")
    (param $lower i32) (param $drift i32) (param $gaps i32) (param $lists i32) (param $u f64)
    (param $skip i32) (param $out i32) (result i32)
    (local $l i32) (local $n i32) (local $mask i32) (local $pu v128)
    (local.set $pu (f64x2.splat (local.get $u)))
    (block $done
      (loop $pairs
        (br_if $done (i32.ge_u (local.get $l) (local.get $lists)))
        (local.set $mask (i64x2.bitmask (v128.and
          (f64x2.gt (local.get $pu)
            (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $gaps) (i32.shl (local.get $l) (i32.const 2))))))
          (f64x2.gt
            (f64x2.add (local.get $pu) (v128.load (i32.add (local.get $drift) (i32.shl (local.get $l) (i32.const 3)))))
            (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $lower) (i32.shl (local.get $l) (i32.const 2)))))))))
        ;; Branch-free: both lists are written, and `n` counts only those that pass (a vector's
        ;; candidates are too unpredictable for a branch per list).
        (i32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))) (local.get $l))
        (local.set $n (i32.add (local.get $n)
          (i32.and (i32.and (local.get $mask) (i32.const 1)) (i32.ne (local.get $l) (local.get $skip)))))
        (i32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2)))
          (i32.add (local.get $l) (i32.const 1)))
        (local.set $n (i32.add (local.get $n)
          (i32.and (i32.and (i32.shr_u (local.get $mask) (i32.const 1))
            (i32.lt_u (i32.add (local.get $l) (i32.const 1)) (local.get $lists)))
            (i32.ne (i32.add (local.get $l) (i32.const 1)) (local.get $skip)))))
        (local.set $l (i32.add (local.get $l) (i32.const 2)))
        (br $pairs)))
    (local.get $n))

  ;; <u, q> for one multi-bit code against an 8-bit query, both stored as bit planes.
  ;;
  ;; `codes` holds `planes` planes of `pairs` 16-byte chunks (128 dimensions each); plane j
  ;; carries bit j of every code value u_i. `q` holds 8 planes laid out the same way,
  ;; plane k carrying bit k of every query value (0..255). The result is
  ;; sum_i u_i * q_i = sum_j sum_k 2^(j+k) * popcount(plane_j AND qplane_k), which fits an
  ;; i32 for paddedDim * 255 * 255 < 2^31.
  (func (export "exdot")
    (param $codes i32) (param $planes i32) (param $pairs i32) (param $q i32) (result i32)
    (local $j i32) (local $w i32) (local $stride i32) (local $cp i32) (local $qp i32)
    (local $c v128) (local $s v128) (local $plane v128) (local $acc v128)
    (local.set $stride (i32.shl (local.get $pairs) (i32.const 4)))
    (local.set $acc (v128.const i32x4 0 0 0 0))
    (local.set $cp (local.get $codes))
    (block $planes_done
      (loop $plane_loop
        (br_if $planes_done (i32.ge_u (local.get $j) (local.get $planes)))
        (local.set $plane (v128.const i32x4 0 0 0 0))
        (local.set $qp (local.get $q))
        (local.set $w (i32.const 0))
        (block $words_done
          (loop $words
            (br_if $words_done (i32.ge_u (local.get $w) (local.get $pairs)))
            (local.set $c (v128.load (local.get $cp)))
            ;; k = 0
            (local.set $s (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))))
            ;; k = 1 .. 7: plane k of the query sits k strides further on
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 1))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 2))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 3))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 4))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 5))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 6))))
            (local.set $qp (i32.add (local.get $qp) (local.get $stride)))
            (local.set $s (i16x8.add (local.get $s) (i16x8.shl (i16x8.extadd_pairwise_i8x16_u
              (i8x16.popcnt (v128.and (local.get $c) (v128.load (local.get $qp))))) (i32.const 7))))
            ;; each u16 lane is at most 16 * 255 = 4080; widen before it can overflow
            (local.set $plane (i32x4.add (local.get $plane) (i32x4.extadd_pairwise_i16x8_u (local.get $s))))
            ;; back to query plane 0, next chunk
            (local.set $qp (i32.add (i32.sub (local.get $qp) (i32.mul (local.get $stride) (i32.const 7)))
              (i32.const 16)))
            (local.set $cp (i32.add (local.get $cp) (i32.const 16)))
            (local.set $w (i32.add (local.get $w) (i32.const 1)))
            (br $words)))
        (local.set $acc (i32x4.add (local.get $acc) (i32x4.shl (local.get $plane) (local.get $j))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $plane_loop)))
    (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $acc)) (i32x4.extract_lane 1 (local.get $acc)))
      (i32.add (i32x4.extract_lane 2 (local.get $acc)) (i32x4.extract_lane 3 (local.get $acc)))))

  ;; Unnormalized fast Walsh-Hadamard transform of n f32 values in place (n a power of
  ;; two, at least 4). Butterflies (x, y) -> (x + y, x - y), stride 1 first.
  (func (export "fwht") (param $p i32) (param $n i32)
    (local $i i32) (local $end i32) (local $h i32) (local $blk i32) (local $v v128) (local $a v128)
    (local $b v128)
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    ;; strides 1 and 2 inside each group of four lanes
    (local.set $i (local.get $p))
    (loop $small
      (local.set $v (v128.load (local.get $i)))
      (local.set $a (i8x16.shuffle 0 1 2 3 0 1 2 3 8 9 10 11 8 9 10 11 (local.get $v) (local.get $v)))
      (local.set $b (i8x16.shuffle 4 5 6 7 4 5 6 7 12 13 14 15 12 13 14 15 (local.get $v) (local.get $v)))
      (local.set $v (f32x4.add (local.get $a) (f32x4.mul (local.get $b) (v128.const f32x4 1 -1 1 -1))))
      (local.set $a (i8x16.shuffle 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))
      (local.set $b (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))
      (v128.store (local.get $i)
        (f32x4.add (local.get $a) (f32x4.mul (local.get $b) (v128.const f32x4 1 1 -1 -1))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $small (i32.lt_u (local.get $i) (local.get $end))))
    ;; strides of 4 lanes and up, in bytes: h = 16, 32, ...
    (local.set $h (i32.const 16))
    (block $stages_done
      (loop $stages
        (br_if $stages_done (i32.ge_u (local.get $h) (i32.shl (local.get $n) (i32.const 2))))
        (local.set $blk (local.get $p))
        (loop $blocks
          (local.set $i (local.get $blk))
          (loop $pairs
            (local.set $a (v128.load (local.get $i)))
            (local.set $b (v128.load (i32.add (local.get $i) (local.get $h))))
            (v128.store (local.get $i) (f32x4.add (local.get $a) (local.get $b)))
            (v128.store (i32.add (local.get $i) (local.get $h)) (f32x4.sub (local.get $a) (local.get $b)))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br_if $pairs (i32.lt_u (local.get $i) (i32.add (local.get $blk) (local.get $h)))))
          (local.set $blk (i32.add (local.get $blk) (i32.shl (local.get $h) (i32.const 1))))
          (br_if $blocks (i32.lt_u (local.get $blk) (local.get $end))))
        (local.set $h (i32.shl (local.get $h) (i32.const 1)))
        (br $stages))))

  ;; x[i] *= s[i] for n f32 values (n a multiple of 4).
  (func (export "mul") (param $x i32) (param $s i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (v128.store (local.get $x) (f32x4.mul (v128.load (local.get $x)) (v128.load (local.get $s))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (br $next))))

  ;; x[i] *= f for n f32 values (n a multiple of 4).
  (func (export "scale") (param $x i32) (param $n i32) (param $f f32)
    (local $end i32) (local $fv v128)
    (local.set $fv (f32x4.splat (local.get $f)))
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (v128.store (local.get $x) (f32x4.mul (v128.load (local.get $x)) (local.get $fv)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $next))))

  ;; One step of Kac's walk between the two halves: (x[i], x[i + half]) -> (x + y, x - y)
  ;; for i < half (half a multiple of 4).
  (func (export "kac") (param $x i32) (param $half i32)
    (local $end i32) (local $off i32) (local $a v128) (local $b v128)
    (local.set $off (i32.shl (local.get $half) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (local.get $off)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $a (v128.load (local.get $x)))
        (local.set $b (v128.load (i32.add (local.get $x) (local.get $off))))
        (v128.store (local.get $x) (f32x4.add (local.get $a) (local.get $b)))
        (v128.store (i32.add (local.get $x) (local.get $off)) (f32x4.sub (local.get $a) (local.get $b)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $next))))

  ;; Dot product of n f32 values (n a multiple of 4): four lane sums, each updated by
  ;; one f32 multiply and one f32 add per step, then (s0 + s1) + (s2 + s3).
  (func $dot (export "dot") (param $a i32) (param $b i32) (param $n i32) (result f32)
    (local $end i32) (local $acc v128)
    (local.set $acc (v128.const f32x4 0 0 0 0))
    (local.set $end (i32.add (local.get $a) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $acc (f32x4.add (local.get $acc)
          (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (br $next)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))

  ;; Squared Euclidean distance of n f32 values (n a multiple of 4), summed like `dot`.
  (func $l2sq (export "l2sq") (param $a i32) (param $b i32) (param $n i32) (result f32)
    (local $end i32) (local $acc v128) (local $d v128)
    (local.set $acc (v128.const f32x4 0 0 0 0))
    (local.set $end (i32.add (local.get $a) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $d (f32x4.sub (v128.load (local.get $a)) (v128.load (local.get $b))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $d) (local.get $d))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (br $next)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))

  ;; Exact distances from the row at `x` to `count` rows at the byte offsets listed (u32) at
  ;; `rows`, n f32 values each (n a multiple of 4): `dot` when `l2` is 0, `l2sq` otherwise, each
  ;; row summed exactly as those do (so the results are theirs, bit for bit), f32 at `out`.
  (func (export "distances")
    (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $l2 i32) (param $out i32)
    (local $r i32) (local $p i32)
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (local.set $p (i32.add (local.get $rows) (i32.shl (local.get $r) (i32.const 2))))
        (call $quad (local.get $x)
          (i32.load (local.get $p)) (i32.load offset=4 (local.get $p))
          (i32.load offset=8 (local.get $p)) (i32.load offset=12 (local.get $p))
          (local.get $n) (local.get $l2) (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    (block $rest_done
      (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $p (i32.load (i32.add (local.get $rows) (i32.shl (local.get $r) (i32.const 2)))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
          (if (result f32) (local.get $l2)
            (then (call $l2sq (local.get $p) (local.get $x) (local.get $n)))
            (else (call $dot (local.get $p) (local.get $x) (local.get $n)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rest))))

  ;; `dot` (l2 = 0) or `l2sq` of the row at x against four rows p0..p3 at once, bit for bit
  ;; theirs, into out[0..3]: four independent sums instead of one chain of dependent adds, and
  ;; four streams of loads in flight (what reranking rows that are not in cache waits on).
  (func $quad
    (param $x i32) (param $p0 i32) (param $p1 i32) (param $p2 i32) (param $p3 i32) (param $n i32)
    (param $l2 i32) (param $out i32)
    (local $j i32) (local $bytes i32) (local $q v128) (local $d v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $s0 (v128.const f32x4 0 0 0 0))
    (local.set $s1 (v128.const f32x4 0 0 0 0))
    (local.set $s2 (v128.const f32x4 0 0 0 0))
    (local.set $s3 (v128.const f32x4 0 0 0 0))
    (if (local.get $l2)
      (then
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $q)))
            (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $q)))
            (local.set $s1 (f32x4.add (local.get $s1) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $q)))
            (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $q)))
            (local.set $s3 (f32x4.add (local.get $s3) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step))))
      (else
        ;; rows times x, the operand order of `dot` (a product does not depend on it anyway)
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $s0 (f32x4.add (local.get $s0)
              (f32x4.mul (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $q))))
            (local.set $s1 (f32x4.add (local.get $s1)
              (f32x4.mul (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $q))))
            (local.set $s2 (f32x4.add (local.get $s2)
              (f32x4.mul (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $q))))
            (local.set $s3 (f32x4.add (local.get $s3)
              (f32x4.mul (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $q))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step)))))
    (f32.store (local.get $out) (call $lanes (local.get $s0)))
    (f32.store offset=4 (local.get $out) (call $lanes (local.get $s1)))
    (f32.store offset=8 (local.get $out) (call $lanes (local.get $s2)))
    (f32.store offset=12 (local.get $out) (call $lanes (local.get $s3))))

  ;; (s0 + s1) + (s2 + s3) of one f32x4, the last step of `dot` and `l2sq`.
  (func $lanes (param $s v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $s)) (f32x4.extract_lane 1 (local.get $s)))
      (f32.add (f32x4.extract_lane 2 (local.get $s)) (f32x4.extract_lane 3 (local.get $s)))))

  ;; `dots16` for two rows x and x2 at once, into `out` and `out2` (the same exact sums): each
  ;; row of the table is loaded once for both (searchMany probes two queries at a time; the
  ;; 384 KB of Fashion-MNIST's i16 centroids come from L2 or further).
  (func (export "dots16x2") (param $x i32) (param $x2 i32) (param $rows i32) (param $count i32) (param $n i32)
    (param $out i32) (param $out2 i32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $q v128) (local $q2 v128) (local $c v128)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 1)))
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (local.set $p0 (local.get $rows))
        (local.set $p1 (i32.add (local.get $p0) (local.get $bytes)))
        (local.set $p2 (i32.add (local.get $p1) (local.get $bytes)))
        (local.set $p3 (i32.add (local.get $p2) (local.get $bytes)))
        (local.set $s0 (v128.const i32x4 0 0 0 0))
        (local.set $t0 (v128.const i32x4 0 0 0 0))
        (local.set $s1 (v128.const i32x4 0 0 0 0))
        (local.set $t1 (v128.const i32x4 0 0 0 0))
        (local.set $s2 (v128.const i32x4 0 0 0 0))
        (local.set $t2 (v128.const i32x4 0 0 0 0))
        (local.set $s3 (v128.const i32x4 0 0 0 0))
        (local.set $t3 (v128.const i32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $q2 (v128.load (i32.add (local.get $x2) (local.get $j))))
            (local.set $c (v128.load (i32.add (local.get $p0) (local.get $j))))
            (local.set $s0 (i32x4.add (local.get $s0) (i32x4.dot_i16x8_s (local.get $c) (local.get $q))))
            (local.set $t0 (i32x4.add (local.get $t0) (i32x4.dot_i16x8_s (local.get $c) (local.get $q2))))
            (local.set $c (v128.load (i32.add (local.get $p1) (local.get $j))))
            (local.set $s1 (i32x4.add (local.get $s1) (i32x4.dot_i16x8_s (local.get $c) (local.get $q))))
            (local.set $t1 (i32x4.add (local.get $t1) (i32x4.dot_i16x8_s (local.get $c) (local.get $q2))))
            (local.set $c (v128.load (i32.add (local.get $p2) (local.get $j))))
            (local.set $s2 (i32x4.add (local.get $s2) (i32x4.dot_i16x8_s (local.get $c) (local.get $q))))
            (local.set $t2 (i32x4.add (local.get $t2) (i32x4.dot_i16x8_s (local.get $c) (local.get $q2))))
            (local.set $c (v128.load (i32.add (local.get $p3) (local.get $j))))
            (local.set $s3 (i32x4.add (local.get $s3) (i32x4.dot_i16x8_s (local.get $c) (local.get $q))))
            (local.set $t3 (i32x4.add (local.get $t3) (i32x4.dot_i16x8_s (local.get $c) (local.get $q2))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step)))
        (f64.store offset=0 (local.get $out) (call $sum4 (local.get $s0)))
        (f64.store offset=0 (local.get $out2) (call $sum4 (local.get $t0)))
        (f64.store offset=8 (local.get $out) (call $sum4 (local.get $s1)))
        (f64.store offset=8 (local.get $out2) (call $sum4 (local.get $t1)))
        (f64.store offset=16 (local.get $out) (call $sum4 (local.get $s2)))
        (f64.store offset=16 (local.get $out2) (call $sum4 (local.get $t2)))
        (f64.store offset=24 (local.get $out) (call $sum4 (local.get $s3)))
        (f64.store offset=24 (local.get $out2) (call $sum4 (local.get $t3)))
        (local.set $rows (i32.add (local.get $rows) (i32.shl (local.get $bytes) (i32.const 2))))
        (local.set $out (i32.add (local.get $out) (i32.const 32)))
        (local.set $out2 (i32.add (local.get $out2) (i32.const 32)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    (call $dots16From (local.get $x) (local.get $rows) (i32.sub (local.get $count) (local.get $r)) (local.get $n) (local.get $out))
    (call $dots16From (local.get $x2) (local.get $rows) (i32.sub (local.get $count) (local.get $r)) (local.get $n) (local.get $out2)))

  ;; `dots16` of `count` rows one at a time (the rows a four-row step leaves).
  (func $dots16From (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $out i32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $s0 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 1)))
    (block $rest_done
      (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $s0 (v128.const i32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        (block $done1
          (loop $step1
            (br_if $done1 (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $s0 (i32x4.add (local.get $s0)
              (i32x4.dot_i16x8_s (v128.load (i32.add (local.get $rows) (local.get $j)))
                (v128.load (i32.add (local.get $x) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step1)))
        (f64.store (local.get $out) (call $sum4 (local.get $s0)))
        (local.set $rows (i32.add (local.get $rows) (local.get $bytes)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rest))))

  ;; The coarse probe's bounds and candidates (index-memory.ts, #probe): for every list l <
  ;; `lists`, from its i16 dot product d = dots[l] (f64, as `dots16` wrote it) and its row of
  ;; the table (five f64 arrays of `stride` entries each from `table`: scale, slack, weight,
  ;; l1, norm), with p = params (f64: sq, m, halfSq, gamma, l2 (0 or 1), nprobe), in f64 and in
  ;; this order:
  ;;   approx = (p.sq * scale) * d
  ;;   err    = ((p.m * slack + p.halfSq * weight) + p.gamma * l1) * 1.000001 + |approx| * 1e-12
  ;;   l2:    pad = ((norm + 2 |approx|) + 2 err) * 1e-12,
  ;;          lo = (norm - 2 (approx + err)) - pad,  hi = (norm - 2 (approx - err)) + pad
  ;;   else:  lo = -(approx + err),  hi = -(approx - err)
  ;; lo is written over dots[l]; cut = the nprobe-th smallest hi (nprobe >= 1; `best` holds
  ;; nprobe f64 of scratch); writes every l with lo <= cut, in list order, as u32 at `out`, and
  ;; returns how many. Two lists a step (f64x2); with an odd `lists` the table and `dots` are
  ;; read one entry past the end (stride is even), and that lane is never used.
  (func (export "probebound")
    (param $dots i32) (param $table i32) (param $stride i32) (param $lists i32) (param $params i32)
    (param $best i32) (param $out i32) (result i32)
    (local $l i32) (local $at i32) (local $row i32) (local $filled i32) (local $nprobe i32) (local $n i32)
    (local $sq v128) (local $m v128) (local $hsq v128) (local $gamma v128) (local $l2 i32)
    (local $approx v128) (local $err v128) (local $abs v128) (local $norm v128) (local $pad v128)
    (local $lo v128) (local $hi v128) (local $b f64) (local $cut f64)
    (local.set $sq (v128.load64_splat (local.get $params)))
    (local.set $m (v128.load64_splat offset=8 (local.get $params)))
    (local.set $hsq (v128.load64_splat offset=16 (local.get $params)))
    (local.set $gamma (v128.load64_splat offset=24 (local.get $params)))
    (local.set $l2 (f64.ne (f64.load offset=32 (local.get $params)) (f64.const 0)))
    (local.set $nprobe (i32.trunc_f64_u (f64.load offset=40 (local.get $params))))
    (local.set $row (i32.shl (local.get $stride) (i32.const 3)))
    (block $done
      (loop $pairs
        (br_if $done (i32.ge_u (local.get $l) (local.get $lists)))
        (local.set $at (i32.add (local.get $table) (i32.shl (local.get $l) (i32.const 3))))
        (local.set $approx (f64x2.mul (f64x2.mul (local.get $sq) (v128.load (local.get $at)))
          (v128.load (i32.add (local.get $dots) (i32.shl (local.get $l) (i32.const 3))))))
        (local.set $abs (f64x2.abs (local.get $approx)))
        (local.set $err (f64x2.add
          (f64x2.mul
            (f64x2.add
              (f64x2.add
                (f64x2.mul (local.get $m) (v128.load (i32.add (local.get $at) (local.get $row))))
                (f64x2.mul (local.get $hsq) (v128.load (i32.add (local.get $at) (i32.shl (local.get $row) (i32.const 1))))))
              (f64x2.mul (local.get $gamma) (v128.load (i32.add (local.get $at) (i32.mul (local.get $row) (i32.const 3))))))
            (v128.const f64x2 1.000001 1.000001))
          (f64x2.mul (local.get $abs) (v128.const f64x2 1e-12 1e-12))))
        (if (local.get $l2)
          (then
            (local.set $norm (v128.load (i32.add (local.get $at) (i32.shl (local.get $row) (i32.const 2)))))
            (local.set $pad (f64x2.mul
              (f64x2.add
                (f64x2.add (local.get $norm) (f64x2.mul (v128.const f64x2 2 2) (local.get $abs)))
                (f64x2.mul (v128.const f64x2 2 2) (local.get $err)))
              (v128.const f64x2 1e-12 1e-12)))
            (local.set $lo (f64x2.sub
              (f64x2.sub (local.get $norm)
                (f64x2.mul (v128.const f64x2 2 2) (f64x2.add (local.get $approx) (local.get $err))))
              (local.get $pad)))
            (local.set $hi (f64x2.add
              (f64x2.sub (local.get $norm)
                (f64x2.mul (v128.const f64x2 2 2) (f64x2.sub (local.get $approx) (local.get $err))))
              (local.get $pad))))
          (else
            (local.set $lo (f64x2.neg (f64x2.add (local.get $approx) (local.get $err))))
            (local.set $hi (f64x2.neg (f64x2.sub (local.get $approx) (local.get $err))))))
        (v128.store (i32.add (local.get $dots) (i32.shl (local.get $l) (i32.const 3))) (local.get $lo))
        (local.set $b (f64x2.extract_lane 0 (local.get $hi)))
        (local.set $filled (call $keepSmallest (local.get $best) (local.get $filled) (local.get $nprobe) (local.get $b)))
        (if (i32.lt_u (i32.add (local.get $l) (i32.const 1)) (local.get $lists))
          (then
            (local.set $b (f64x2.extract_lane 1 (local.get $hi)))
            (local.set $filled (call $keepSmallest (local.get $best) (local.get $filled) (local.get $nprobe) (local.get $b)))))
        (local.set $l (i32.add (local.get $l) (i32.const 2)))
        (br $pairs)))
    (local.set $cut (f64.load (i32.add (local.get $best) (i32.shl (i32.sub (local.get $nprobe) (i32.const 1)) (i32.const 3)))))
    (local.set $l (i32.const 0))
    (block $done2
      (loop $lists
        (br_if $done2 (i32.ge_u (local.get $l) (local.get $lists)))
        (if (f64.le (f64.load (i32.add (local.get $dots) (i32.shl (local.get $l) (i32.const 3)))) (local.get $cut))
          (then
            (i32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))) (local.get $l))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))))
        (local.set $l (i32.add (local.get $l) (i32.const 1)))
        (br $lists)))
    (local.get $n))

  ;; The `nprobe` smallest values so far, ascending, at `best` (`filled` of them): b goes in
  ;; by insertion while fewer than nprobe are kept or it is under the largest; returns the new
  ;; count. (The set kept does not depend on the order values come in.)
  (func $keepSmallest (param $best i32) (param $filled i32) (param $nprobe i32) (param $b f64) (result i32)
    (local $i i32) (local $y f64)
    (if (i32.lt_u (local.get $filled) (local.get $nprobe))
      (then
        (local.set $i (local.get $filled))
        (local.set $filled (i32.add (local.get $filled) (i32.const 1))))
      (else
        (if (i32.eqz (f64.lt (local.get $b)
              (f64.load (i32.add (local.get $best) (i32.shl (i32.sub (local.get $nprobe) (i32.const 1)) (i32.const 3))))))
          (then (return (local.get $filled))))
        (local.set $i (i32.sub (local.get $nprobe) (i32.const 1)))))
    (block $placed
      (loop $shift
        (br_if $placed (i32.eqz (local.get $i)))
        (local.set $y (f64.load (i32.add (local.get $best) (i32.shl (i32.sub (local.get $i) (i32.const 1)) (i32.const 3)))))
        (br_if $placed (i32.eqz (f64.gt (local.get $y) (local.get $b))))
        (f64.store (i32.add (local.get $best) (i32.shl (local.get $i) (i32.const 3))) (local.get $y))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $shift)))
    (f64.store (i32.add (local.get $best) (i32.shl (local.get $i) (i32.const 3))) (local.get $b))
    (local.get $filled))

  ;; `distances` for the rerank, eight rows at a time (then four, then one): the same
  ;; bits as `distances` (each row summed as $quad, `dot` and `l2sq` sum it), with eight
  ;; streams of loads in flight instead of four. Reranked rows are rarely in cache (Fashion-
  ;; MNIST's 60,000 x 784 f32 are 188 MB), and waiting on them was most of a rerank's time.
  (func (export "distances8")
    (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $l2 i32) (param $out i32)
    (local $r i32) (local $p i32)
    (block $octs_done
      (loop $octs
        (br_if $octs_done (i32.gt_u (i32.add (local.get $r) (i32.const 8)) (local.get $count)))
        (local.set $p (i32.add (local.get $rows) (i32.shl (local.get $r) (i32.const 2))))
        (call $oct (local.get $x)
          (i32.load offset=0 (local.get $p)) (i32.load offset=4 (local.get $p)) (i32.load offset=8 (local.get $p)) (i32.load offset=12 (local.get $p)) (i32.load offset=16 (local.get $p)) (i32.load offset=20 (local.get $p)) (i32.load offset=24 (local.get $p)) (i32.load offset=28 (local.get $p))
          (local.get $n) (local.get $l2) (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))))
        (local.set $r (i32.add (local.get $r) (i32.const 8)))
        (br $octs)))
    (call $distancesFrom (local.get $x) (local.get $rows) (local.get $count) (local.get $n) (local.get $l2)
      (local.get $out) (local.get $r)))

  ;; `distances` from row `r` on (the rows before it done by the caller).
  (func $distancesFrom
    (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $l2 i32) (param $out i32)
    (param $r i32)
    (local $p i32)
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (local.set $p (i32.add (local.get $rows) (i32.shl (local.get $r) (i32.const 2))))
        (call $quad (local.get $x)
          (i32.load (local.get $p)) (i32.load offset=4 (local.get $p))
          (i32.load offset=8 (local.get $p)) (i32.load offset=12 (local.get $p))
          (local.get $n) (local.get $l2) (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    (block $rest_done
      (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $p (i32.load (i32.add (local.get $rows) (i32.shl (local.get $r) (i32.const 2)))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
          (if (result f32) (local.get $l2)
            (then (call $l2sq (local.get $p) (local.get $x) (local.get $n)))
            (else (call $dot (local.get $p) (local.get $x) (local.get $n)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rest))))

  ;; $quad for eight rows p0..p7 into out[0..7] (each row's sum as $quad makes it).
  (func $oct
    (param $x i32) (param $p0 i32) (param $p1 i32) (param $p2 i32) (param $p3 i32) (param $p4 i32) (param $p5 i32) (param $p6 i32) (param $p7 i32) (param $n i32)
    (param $l2 i32) (param $out i32)
    (local $j i32) (local $bytes i32) (local $q v128) (local $d v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $s4 v128) (local $s5 v128) (local $s6 v128) (local $s7 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $s0 (v128.const f32x4 0 0 0 0))
    (local.set $s1 (v128.const f32x4 0 0 0 0))
    (local.set $s2 (v128.const f32x4 0 0 0 0))
    (local.set $s3 (v128.const f32x4 0 0 0 0))
    (local.set $s4 (v128.const f32x4 0 0 0 0))
    (local.set $s5 (v128.const f32x4 0 0 0 0))
    (local.set $s6 (v128.const f32x4 0 0 0 0))
    (local.set $s7 (v128.const f32x4 0 0 0 0))
    (if (local.get $l2)
      (then
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $q)))
            (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $q)))
            (local.set $s1 (f32x4.add (local.get $s1) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $q)))
            (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $q)))
            (local.set $s3 (f32x4.add (local.get $s3) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p4) (local.get $j))) (local.get $q)))
            (local.set $s4 (f32x4.add (local.get $s4) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p5) (local.get $j))) (local.get $q)))
            (local.set $s5 (f32x4.add (local.get $s5) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p6) (local.get $j))) (local.get $q)))
            (local.set $s6 (f32x4.add (local.get $s6) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p7) (local.get $j))) (local.get $q)))
            (local.set $s7 (f32x4.add (local.get $s7) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step))))
      (else
        (block $done
          (loop $step
            (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
            (local.set $q (v128.load (i32.add (local.get $x) (local.get $j))))
            (local.set $s0 (f32x4.add (local.get $s0)
              (f32x4.mul (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $q))))
            (local.set $s1 (f32x4.add (local.get $s1)
              (f32x4.mul (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $q))))
            (local.set $s2 (f32x4.add (local.get $s2)
              (f32x4.mul (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $q))))
            (local.set $s3 (f32x4.add (local.get $s3)
              (f32x4.mul (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $q))))
            (local.set $s4 (f32x4.add (local.get $s4)
              (f32x4.mul (v128.load (i32.add (local.get $p4) (local.get $j))) (local.get $q))))
            (local.set $s5 (f32x4.add (local.get $s5)
              (f32x4.mul (v128.load (i32.add (local.get $p5) (local.get $j))) (local.get $q))))
            (local.set $s6 (f32x4.add (local.get $s6)
              (f32x4.mul (v128.load (i32.add (local.get $p6) (local.get $j))) (local.get $q))))
            (local.set $s7 (f32x4.add (local.get $s7)
              (f32x4.mul (v128.load (i32.add (local.get $p7) (local.get $j))) (local.get $q))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $step)))))
    (f32.store offset=0 (local.get $out) (call $lanes (local.get $s0)))
    (f32.store offset=4 (local.get $out) (call $lanes (local.get $s1)))
    (f32.store offset=8 (local.get $out) (call $lanes (local.get $s2)))
    (f32.store offset=12 (local.get $out) (call $lanes (local.get $s3)))
    (f32.store offset=16 (local.get $out) (call $lanes (local.get $s4)))
    (f32.store offset=20 (local.get $out) (call $lanes (local.get $s5)))
    (f32.store offset=24 (local.get $out) (call $lanes (local.get $s6)))
    (f32.store offset=28 (local.get $out) (call $lanes (local.get $s7))))

  ;; out[r] = dot(rows[r], x) for `count` consecutive rows of n f32 values each (n a multiple
  ;; of 4), four rows at a time through $quad (the same bits as `dot` row by row).
  (func (export "dots") (param $x i32) (param $rows i32) (param $count i32) (param $n i32) (param $out i32)
    (local $r i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $n) (i32.const 2)))
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (call $quad (local.get $x)
          (local.get $rows)
          (i32.add (local.get $rows) (local.get $stride))
          (i32.add (local.get $rows) (i32.shl (local.get $stride) (i32.const 1)))
          (i32.add (local.get $rows) (i32.mul (local.get $stride) (i32.const 3)))
          (local.get $n) (i32.const 0) (local.get $out))
        (local.set $rows (i32.add (local.get $rows) (i32.shl (local.get $stride) (i32.const 2))))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $r) (local.get $count)))
        (f32.store (local.get $out) (call $dot (local.get $rows) (local.get $x) (local.get $n)))
        (local.set $rows (i32.add (local.get $rows) (local.get $stride)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next))))

  ;; out[p * count + r] = dot(rows[r], x_p) for `npts` points x_p, whose byte offsets are listed
  ;; (u32) at `xs`, against `count` consecutive rows of n f32 values each (n a multiple of 4):
  ;; the bits of `dot` for every pair. k-means' assignment step: a matrix product done as two
  ;; points by four rows at a time (eight independent sums; each row load serves two points,
  ;; each point load four rows), rows outermost so that four rows stay in L1 while the
  ;; points (a block the caller sizes to stay in L2) stream past them.
  (func (export "gemm")
    (param $xs i32) (param $npts i32) (param $rows i32) (param $count i32) (param $n i32) (param $out i32)
    (local $r i32) (local $p i32) (local $stride i32) (local $ostride i32) (local $row i32) (local $o i32)
    (local $x i32)
    (local.set $stride (i32.shl (local.get $n) (i32.const 2)))
    (local.set $ostride (i32.shl (local.get $count) (i32.const 2)))
    (block $quads_done
      (loop $quads
        (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $count)))
        (local.set $row (i32.add (local.get $rows) (i32.mul (local.get $r) (local.get $stride))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))))
        (local.set $p (i32.const 0))
        (block $pairs_done
          (loop $pairs
            (br_if $pairs_done (i32.gt_u (i32.add (local.get $p) (i32.const 2)) (local.get $npts)))
            (local.set $x (i32.add (local.get $xs) (i32.shl (local.get $p) (i32.const 2))))
            (call $tile (i32.load (local.get $x)) (i32.load offset=4 (local.get $x))
              (local.get $row) (local.get $stride)
              (local.get $o) (i32.add (local.get $o) (local.get $ostride)))
            (local.set $o (i32.add (local.get $o) (i32.shl (local.get $ostride) (i32.const 1))))
            (local.set $p (i32.add (local.get $p) (i32.const 2)))
            (br $pairs)))
        (if (i32.lt_u (local.get $p) (local.get $npts))
          (then
            (local.set $x (i32.load (i32.add (local.get $xs) (i32.shl (local.get $p) (i32.const 2)))))
            (call $quad (local.get $x)
              (local.get $row)
              (i32.add (local.get $row) (local.get $stride))
              (i32.add (local.get $row) (i32.shl (local.get $stride) (i32.const 1)))
              (i32.add (local.get $row) (i32.mul (local.get $stride) (i32.const 3)))
              (local.get $n) (i32.const 0) (local.get $o))))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $quads)))
    ;; the last count % 4 rows, one dot each
    (block $rest_done
      (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $row (i32.add (local.get $rows) (i32.mul (local.get $r) (local.get $stride))))
        (local.set $p (i32.const 0))
        (block $points_done
          (loop $points
            (br_if $points_done (i32.ge_u (local.get $p) (local.get $npts)))
            (f32.store
              (i32.add (local.get $out)
                (i32.shl (i32.add (i32.mul (local.get $p) (local.get $count)) (local.get $r)) (i32.const 2)))
              (call $dot (local.get $row)
                (i32.load (i32.add (local.get $xs) (i32.shl (local.get $p) (i32.const 2))))
                (local.get $n)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $points)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rest))))

  ;; `dot` of two points x0, x1 against four consecutive rows from r0 (`stride` bytes apart,
  ;; `stride` also the row length), into o0[0..3] and o1[0..3], bit for bit `dot`'s.
  ;; ($lanes written out: eight calls a tile cost about 8% of a k-means pass.)
  (func $tile
    (param $x0 i32) (param $x1 i32) (param $r0 i32) (param $stride i32) (param $o0 i32) (param $o1 i32)
    (local $j i32) (local $r1 i32) (local $r2 i32) (local $r3 i32) (local $a v128) (local $b v128) (local $c v128)
    (local $s00 v128) (local $s01 v128) (local $s02 v128) (local $s03 v128)
    (local $s10 v128) (local $s11 v128) (local $s12 v128) (local $s13 v128)
    (local.set $r1 (i32.add (local.get $r0) (local.get $stride)))
    (local.set $r2 (i32.add (local.get $r1) (local.get $stride)))
    (local.set $r3 (i32.add (local.get $r2) (local.get $stride)))
    (block $done
      (loop $step
        (br_if $done (i32.ge_u (local.get $j) (local.get $stride)))
        (local.set $a (v128.load (i32.add (local.get $x0) (local.get $j))))
        (local.set $b (v128.load (i32.add (local.get $x1) (local.get $j))))
        (local.set $c (v128.load (i32.add (local.get $r0) (local.get $j))))
        (local.set $s00 (f32x4.add (local.get $s00) (f32x4.mul (local.get $c) (local.get $a))))
        (local.set $s10 (f32x4.add (local.get $s10) (f32x4.mul (local.get $c) (local.get $b))))
        (local.set $c (v128.load (i32.add (local.get $r1) (local.get $j))))
        (local.set $s01 (f32x4.add (local.get $s01) (f32x4.mul (local.get $c) (local.get $a))))
        (local.set $s11 (f32x4.add (local.get $s11) (f32x4.mul (local.get $c) (local.get $b))))
        (local.set $c (v128.load (i32.add (local.get $r2) (local.get $j))))
        (local.set $s02 (f32x4.add (local.get $s02) (f32x4.mul (local.get $c) (local.get $a))))
        (local.set $s12 (f32x4.add (local.get $s12) (f32x4.mul (local.get $c) (local.get $b))))
        (local.set $c (v128.load (i32.add (local.get $r3) (local.get $j))))
        (local.set $s03 (f32x4.add (local.get $s03) (f32x4.mul (local.get $c) (local.get $a))))
        (local.set $s13 (f32x4.add (local.get $s13) (f32x4.mul (local.get $c) (local.get $b))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $step)))
    (f32.store (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s00)) (f32x4.extract_lane 1 (local.get $s00))) (f32.add (f32x4.extract_lane 2 (local.get $s00)) (f32x4.extract_lane 3 (local.get $s00)))))
    (f32.store offset=4 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s01)) (f32x4.extract_lane 1 (local.get $s01))) (f32.add (f32x4.extract_lane 2 (local.get $s01)) (f32x4.extract_lane 3 (local.get $s01)))))
    (f32.store offset=8 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s02)) (f32x4.extract_lane 1 (local.get $s02))) (f32.add (f32x4.extract_lane 2 (local.get $s02)) (f32x4.extract_lane 3 (local.get $s02)))))
    (f32.store offset=12 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s03)) (f32x4.extract_lane 1 (local.get $s03))) (f32.add (f32x4.extract_lane 2 (local.get $s03)) (f32x4.extract_lane 3 (local.get $s03)))))
    (f32.store (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s10)) (f32x4.extract_lane 1 (local.get $s10))) (f32.add (f32x4.extract_lane 2 (local.get $s10)) (f32x4.extract_lane 3 (local.get $s10)))))
    (f32.store offset=4 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s11)) (f32x4.extract_lane 1 (local.get $s11))) (f32.add (f32x4.extract_lane 2 (local.get $s11)) (f32x4.extract_lane 3 (local.get $s11)))))
    (f32.store offset=8 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s12)) (f32x4.extract_lane 1 (local.get $s12))) (f32.add (f32x4.extract_lane 2 (local.get $s12)) (f32x4.extract_lane 3 (local.get $s12)))))
    (f32.store offset=12 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s13)) (f32x4.extract_lane 1 (local.get $s13))) (f32.add (f32x4.extract_lane 2 (local.get $s13)) (f32x4.extract_lane 3 (local.get $s13))))))

  ;; One k-means assignment pass under Elkan's bounds (ivf.ts, design/0004), every sample
  ;; vector in order, so that the per-vector bookkeeping runs here and not in JavaScript.
  ;; Sixteen vectors at a time: (A) each one's candidates (by gap while the bound passes at
  ;; most `scan` of its centroid's nearest others, else `elkan` over every list; the bound
  ;; tightened when more than `tighten` pass), its own centroid first, queued four centroids
  ;; to an entry; (B) the queued products, two entries at a time through $quad2 (eight
  ;; independent sums; one vector's four alone left the adds waiting on each other), each
  ;; with the bits of `dot`; (C) in sample order, each vector's choice (the lowest cost, the
  ;; lowest list on a tie), the lower bounds of the scored pairs, its move (each list's f64
  ;; sums follow the vectors that move), cost and count. A vector's scan reads nothing another
  ;; vector's choice writes, so the grouping changes no result. Every float step is the f64 (or
  ;; f32) operation ivf.ts performed in JavaScript, in its order, so the centroids are the
  ;; same bits; kmeans.ts is the TypeScript twin (one vector at a time). Returns how many moved.
  ;; `p` holds u32 fields (byte offsets unless said): 0 m, 1 lists, 2 dim4 (f32 per row),
  ;; 3 dim, 4 spherical (0/1), 5 sample rows (dim4 f32 each), 6 centroid rows, 7 norms (f64
  ;; per list), 8 sample norms (f64), 9 lower bounds (f32, m x lists, plus drift), 10 drift
  ;; (f64, lists + 1), 11 gaps (f32, lists x lists), 12 each centroid's others by gap (u32,
  ;; lists x lists), 13 those gaps (f32), 14 half the gap to the nearest other (f64 per
  ;; list), 15 upper bounds (f64 per vector), 16 assignment (u32), 17 costs (f64), 18 counts
  ;; (u32 per list), 19 sums (f64, lists x dim), 20 scratch: 16 x (lists + 4) u32 candidates,
  ;; 16 u32 counts, then 16 x ceil(lists / 4) + 1 queue entries of 24 bytes (kmeansScratch in
  ;; kmeans.ts), 21 scores (16 x (lists + 4) f32), 22 scan, 23 tighten.
  (func (export "kmeans") (param $p i32) (result i32)
    (local $m i32) (local $lists i32) (local $dim4 i32) (local $dim i32) (local $spherical i32)
    (local $sample i32) (local $cent i32) (local $norms i32) (local $snorms i32) (local $lower i32)
    (local $drift i32) (local $gaps i32) (local $byGap i32) (local $sorted i32) (local $half i32)
    (local $upper i32) (local $assign i32) (local $cost i32) (local $counts i32) (local $sums i32)
    (local $cand i32) (local $scores i32) (local $scan i32) (local $tighten i32)
    (local $i i32) (local $a i32) (local $x i32) (local $lo i32) (local $ga i32) (local $count i32)
    (local $j i32) (local $l i32) (local $q i32) (local $stride i32) (local $moved i32)
    (local $best i32) (local $last i32) (local $at i32)
    (local $b0 i32) (local $bn i32) (local $k i32) (local $nq i32) (local $e i32) (local $cstride i32)
    (local $ck i32) (local $sk i32) (local $cnts i32) (local $queue i32)
    (local $u f64) (local $t f64) (local $sn f64) (local $d f64) (local $c f64)
    (local $bestCost f64) (local $bestDot f64)
    (local.set $m (i32.load (local.get $p)))
    (local.set $lists (i32.load offset=4 (local.get $p)))
    (local.set $dim4 (i32.load offset=8 (local.get $p)))
    (local.set $dim (i32.load offset=12 (local.get $p)))
    (local.set $spherical (i32.load offset=16 (local.get $p)))
    (local.set $sample (i32.load offset=20 (local.get $p)))
    (local.set $cent (i32.load offset=24 (local.get $p)))
    (local.set $norms (i32.load offset=28 (local.get $p)))
    (local.set $snorms (i32.load offset=32 (local.get $p)))
    (local.set $lower (i32.load offset=36 (local.get $p)))
    (local.set $drift (i32.load offset=40 (local.get $p)))
    (local.set $gaps (i32.load offset=44 (local.get $p)))
    (local.set $byGap (i32.load offset=48 (local.get $p)))
    (local.set $sorted (i32.load offset=52 (local.get $p)))
    (local.set $half (i32.load offset=56 (local.get $p)))
    (local.set $upper (i32.load offset=60 (local.get $p)))
    (local.set $assign (i32.load offset=64 (local.get $p)))
    (local.set $cost (i32.load offset=68 (local.get $p)))
    (local.set $counts (i32.load offset=72 (local.get $p)))
    (local.set $sums (i32.load offset=76 (local.get $p)))
    (local.set $cand (i32.load offset=80 (local.get $p)))
    (local.set $scores (i32.load offset=84 (local.get $p)))
    (local.set $scan (i32.load offset=88 (local.get $p)))
    (local.set $tighten (i32.load offset=92 (local.get $p)))
    (local.set $stride (i32.shl (local.get $dim4) (i32.const 2)))
    (local.set $cstride (i32.shl (i32.add (local.get $lists) (i32.const 4)) (i32.const 2)))
    (local.set $cnts (i32.add (local.get $cand) (i32.shl (local.get $cstride) (i32.const 4))))
    (local.set $queue (i32.add (local.get $cnts) (i32.const 64)))
    (block $all
      (loop $blocks
        (br_if $all (i32.ge_u (local.get $b0) (local.get $m)))
        (local.set $bn (i32.sub (local.get $m) (local.get $b0)))
        (if (i32.gt_u (local.get $bn) (i32.const 16)) (then (local.set $bn (i32.const 16))))
        (local.set $nq (i32.const 0))
        ;; (A) candidates and the queue
        (local.set $k (i32.const 0))
        (loop $scanning
          (local.set $i (i32.add (local.get $b0) (local.get $k)))
          (local.set $ck (i32.add (local.get $cand) (i32.mul (local.get $k) (local.get $cstride))))
          (local.set $a (i32.load (i32.add (local.get $assign) (i32.shl (local.get $i) (i32.const 2)))))
          (local.set $u (f64.load (i32.add (local.get $upper) (i32.shl (local.get $i) (i32.const 3)))))
          (local.set $x (i32.add (local.get $sample) (i32.mul (local.get $i) (local.get $stride))))
          (local.set $count (i32.const 0))
          (block $none
            (br_if $none (i32.eqz (f64.gt (local.get $u)
              (f64.load (i32.add (local.get $half) (i32.shl (local.get $a) (i32.const 3)))))))
            (local.set $sn (f64.load (i32.add (local.get $snorms) (i32.shl (local.get $i) (i32.const 3)))))
            (local.set $lo (i32.add (local.get $lower)
              (i32.shl (i32.mul (local.get $i) (local.get $lists)) (i32.const 2))))
            (local.set $ga (i32.shl (i32.mul (local.get $a) (local.get $lists)) (i32.const 2)))
            ;; the vector's own centroid first, then every other that may be nearer
            (i32.store (local.get $ck) (local.get $a))
            (local.set $count (i32.const 1))
            (if (i32.and (i32.gt_u (local.get $lists) (local.get $scan))
                  (f64.gt (local.get $u) (f64.promote_f32 (f32.load
                    (i32.add (i32.add (local.get $sorted) (local.get $ga)) (i32.shl (local.get $scan) (i32.const 2)))))))
              (then
                (local.set $count (i32.add (i32.const 1)
                  (call $elkan (local.get $lo) (local.get $drift) (i32.add (local.get $gaps) (local.get $ga))
                    (local.get $lists) (local.get $u) (local.get $a) (i32.add (local.get $ck) (i32.const 4))))))
              (else
                (local.set $j (i32.const 0))
                (block $sorted_done
                  (loop $by_gap
                    (br_if $sorted_done (i32.ge_u (local.get $j) (local.get $lists)))
                    (br_if $sorted_done (i32.eqz (f64.gt (local.get $u) (f64.promote_f32 (f32.load
                      (i32.add (i32.add (local.get $sorted) (local.get $ga)) (i32.shl (local.get $j) (i32.const 2))))))))
                    (local.set $l (i32.load
                      (i32.add (i32.add (local.get $byGap) (local.get $ga)) (i32.shl (local.get $j) (i32.const 2)))))
                    (if (i32.and
                          (f64.gt
                            (f64.add (local.get $u)
                              (f64.load (i32.add (local.get $drift) (i32.shl (local.get $l) (i32.const 3)))))
                            (f64.promote_f32 (f32.load (i32.add (local.get $lo) (i32.shl (local.get $l) (i32.const 2))))))
                          (i32.ne (local.get $l) (local.get $a)))
                      (then
                        (i32.store (i32.add (local.get $ck) (i32.shl (local.get $count) (i32.const 2))) (local.get $l))
                        (local.set $count (i32.add (local.get $count) (i32.const 1)))))
                    (local.set $j (i32.add (local.get $j) (i32.const 1)))
                    (br $by_gap)))))
            ;; many pass the loose bound: the exact distance to the own centroid, and the scan
            ;; again at min(t, u)
            (if (i32.gt_u (local.get $count) (local.get $tighten))
              (then
                (local.set $t (f64.sqrt (f64.max (f64.const 0)
                  (f64.sub
                    (f64.add (local.get $sn)
                      (f64.load (i32.add (local.get $norms) (i32.shl (local.get $a) (i32.const 3)))))
                    (f64.mul (f64.const 2) (f64.promote_f32
                      (call $dot (local.get $x) (i32.add (local.get $cent) (i32.mul (local.get $a) (local.get $stride)))
                        (local.get $dim4))))))))
                (local.set $count (i32.add (i32.const 1)
                  (call $elkan (local.get $lo) (local.get $drift) (i32.add (local.get $gaps) (local.get $ga))
                    (local.get $lists) (f64.min (local.get $t) (local.get $u)) (local.get $a)
                    (i32.add (local.get $ck) (i32.const 4)))))
                (f64.store (i32.add (local.get $upper) (i32.shl (local.get $i) (i32.const 3))) (local.get $t))))
            (br_if $none (i32.le_u (local.get $count) (i32.const 1)))
            ;; queue the products, four centroids an entry (the last repeated to fill four)
            (local.set $sk (i32.add (local.get $scores) (i32.mul (local.get $k) (local.get $cstride))))
            (local.set $last (i32.sub (local.get $count) (i32.const 1)))
            (local.set $q (i32.const 0))
            (loop $fours
              (local.set $e (i32.add (local.get $queue) (i32.mul (local.get $nq) (i32.const 24))))
              (i32.store (local.get $e) (local.get $x))
              (i32.store offset=4 (local.get $e) (i32.add (local.get $cent) (i32.mul (local.get $stride)
                (i32.load (i32.add (local.get $ck) (i32.shl (local.get $q) (i32.const 2)))))))
              (i32.store offset=8 (local.get $e) (i32.add (local.get $cent) (i32.mul (local.get $stride)
                (i32.load (i32.add (local.get $ck) (i32.shl
                  (select (local.get $last) (i32.add (local.get $q) (i32.const 1))
                    (i32.gt_u (i32.add (local.get $q) (i32.const 1)) (local.get $last))) (i32.const 2)))))))
              (i32.store offset=12 (local.get $e) (i32.add (local.get $cent) (i32.mul (local.get $stride)
                (i32.load (i32.add (local.get $ck) (i32.shl
                  (select (local.get $last) (i32.add (local.get $q) (i32.const 2))
                    (i32.gt_u (i32.add (local.get $q) (i32.const 2)) (local.get $last))) (i32.const 2)))))))
              (i32.store offset=16 (local.get $e) (i32.add (local.get $cent) (i32.mul (local.get $stride)
                (i32.load (i32.add (local.get $ck) (i32.shl
                  (select (local.get $last) (i32.add (local.get $q) (i32.const 3))
                    (i32.gt_u (i32.add (local.get $q) (i32.const 3)) (local.get $last))) (i32.const 2)))))))
              (i32.store offset=20 (local.get $e) (i32.add (local.get $sk) (i32.shl (local.get $q) (i32.const 2))))
              (local.set $nq (i32.add (local.get $nq) (i32.const 1)))
              (local.set $q (i32.add (local.get $q) (i32.const 4)))
              (br_if $fours (i32.lt_u (local.get $q) (local.get $count)))))
          (i32.store (i32.add (local.get $cnts) (i32.shl (local.get $k) (i32.const 2))) (local.get $count))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $scanning (i32.lt_u (local.get $k) (local.get $bn))))
        ;; (B) the products, two queue entries at a time
        (local.set $e (local.get $queue))
        (local.set $last (i32.add (local.get $queue) (i32.mul (local.get $nq) (i32.const 24))))
        (block $pairs_done
          (loop $pairs
            (br_if $pairs_done (i32.gt_u (i32.add (local.get $e) (i32.const 48)) (local.get $last)))
            (call $quad2
              (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)) (i32.load offset=8 (local.get $e))
              (i32.load offset=12 (local.get $e)) (i32.load offset=16 (local.get $e)) (i32.load offset=20 (local.get $e))
              (i32.load offset=24 (local.get $e)) (i32.load offset=28 (local.get $e)) (i32.load offset=32 (local.get $e))
              (i32.load offset=36 (local.get $e)) (i32.load offset=40 (local.get $e)) (i32.load offset=44 (local.get $e))
              (local.get $dim4))
            (local.set $e (i32.add (local.get $e) (i32.const 48)))
            (br $pairs)))
        (if (i32.lt_u (local.get $e) (local.get $last))
          (then
            (call $quad
              (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)) (i32.load offset=8 (local.get $e))
              (i32.load offset=12 (local.get $e)) (i32.load offset=16 (local.get $e))
              (local.get $dim4) (i32.const 0) (i32.load offset=20 (local.get $e)))))
        ;; (C) the choices, in sample order
        (local.set $k (i32.const 0))
        (loop $choosing
          (local.set $i (i32.add (local.get $b0) (local.get $k)))
          (local.set $count (i32.load (i32.add (local.get $cnts) (i32.shl (local.get $k) (i32.const 2)))))
          (local.set $a (i32.load (i32.add (local.get $assign) (i32.shl (local.get $i) (i32.const 2)))))
          (local.set $sn (f64.load (i32.add (local.get $snorms) (i32.shl (local.get $i) (i32.const 3)))))
          (if (i32.le_u (local.get $count) (i32.const 1))
            (then
              ;; kept without a product: the cost from the upper bound, exact or still loose
              (local.set $u (f64.load (i32.add (local.get $upper) (i32.shl (local.get $i) (i32.const 3)))))
              (local.set $t (f64.mul (local.get $u) (local.get $u)))
              (f64.store (i32.add (local.get $cost) (i32.shl (local.get $i) (i32.const 3)))
                (if (result f64) (local.get $spherical)
                  (then (f64.div
                    (f64.sub (f64.sub (local.get $t) (local.get $sn))
                      (f64.load (i32.add (local.get $norms) (i32.shl (local.get $a) (i32.const 3)))))
                    (f64.const 2)))
                  (else (local.get $t))))
              (local.set $at (i32.add (local.get $counts) (i32.shl (local.get $a) (i32.const 2))))
              (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1))))
            (else
              (local.set $ck (i32.add (local.get $cand) (i32.mul (local.get $k) (local.get $cstride))))
              (local.set $sk (i32.add (local.get $scores) (i32.mul (local.get $k) (local.get $cstride))))
              (local.set $lo (i32.add (local.get $lower)
                (i32.shl (i32.mul (local.get $i) (local.get $lists)) (i32.const 2))))
              (local.set $best (local.get $a))
              (local.set $bestDot (f64.promote_f32 (f32.load (local.get $sk))))
              (local.set $bestCost (call $kcost (local.get $spherical) (local.get $norms) (local.get $a) (local.get $bestDot)))
              (local.set $q (i32.const 1))
              (loop $pick
                (local.set $l (i32.load (i32.add (local.get $ck) (i32.shl (local.get $q) (i32.const 2)))))
                (local.set $d (f64.promote_f32 (f32.load (i32.add (local.get $sk) (i32.shl (local.get $q) (i32.const 2))))))
                (local.set $c
                  (if (result f64) (local.get $spherical)
                    (then (f64.neg (local.get $d)))
                    (else (f64.sub (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3))))
                      (f64.mul (f64.const 2) (local.get $d))))))
                ;; the pair's lower bound, now exact: sqrt(max(0, |x|^2 + |c_l|^2 - 2d)) + drift[l]
                (f32.store (i32.add (local.get $lo) (i32.shl (local.get $l) (i32.const 2)))
                  (f32.demote_f64 (f64.add
                    (f64.sqrt (f64.max (f64.const 0)
                      (f64.sub
                        (f64.add (local.get $sn) (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3)))))
                        (f64.mul (f64.const 2) (local.get $d)))))
                    (f64.load (i32.add (local.get $drift) (i32.shl (local.get $l) (i32.const 3)))))))
                (if (i32.or (f64.lt (local.get $c) (local.get $bestCost))
                      (i32.and (f64.eq (local.get $c) (local.get $bestCost)) (i32.lt_u (local.get $l) (local.get $best))))
                  (then
                    (local.set $best (local.get $l))
                    (local.set $bestCost (local.get $c))
                    (local.set $bestDot (local.get $d))))
                (local.set $q (i32.add (local.get $q) (i32.const 1)))
                (br_if $pick (i32.lt_u (local.get $q) (local.get $count))))
              (if (i32.ne (local.get $best) (local.get $a))
                (then
                  (local.set $moved (i32.add (local.get $moved) (i32.const 1)))
                  (f32.store (i32.add (local.get $lo) (i32.shl (local.get $a) (i32.const 2)))
                    (call $kbound (local.get $sn) (local.get $norms) (local.get $drift) (local.get $a)
                      (f64.promote_f32 (f32.load (local.get $sk)))))
                  (call $kmove (local.get $sums) (local.get $dim) (local.get $a) (local.get $best)
                    (i32.add (local.get $sample) (i32.mul (local.get $i) (local.get $stride))))
                  (i32.store (i32.add (local.get $assign) (i32.shl (local.get $i) (i32.const 2))) (local.get $best))))
              (f64.store (i32.add (local.get $upper) (i32.shl (local.get $i) (i32.const 3)))
                (call $kdist (local.get $sn) (local.get $norms) (local.get $best) (local.get $bestDot)))
              (f64.store (i32.add (local.get $cost) (i32.shl (local.get $i) (i32.const 3)))
                (if (result f64) (local.get $spherical)
                  (then (local.get $bestCost))
                  (else (f64.add (local.get $bestCost) (local.get $sn)))))
              (local.set $at (i32.add (local.get $counts) (i32.shl (local.get $best) (i32.const 2))))
              (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1)))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $choosing (i32.lt_u (local.get $k) (local.get $bn))))
        (local.set $b0 (i32.add (local.get $b0) (i32.const 16)))
        (br $blocks)))
    (local.get $moved))

  ;; Two $quad at once (x0 against rows p0..p3 into o0[0..3], x1 against q0..q3 into o1[0..3]),
  ;; each result bit for bit `dot`'s: eight independent sums, so that the adds of one do not
  ;; wait on each other (k-means' candidates, where a vector has a handful of rows to score).
  (func $quad2
    (param $x0 i32) (param $p0 i32) (param $p1 i32) (param $p2 i32) (param $p3 i32) (param $o0 i32)
    (param $x1 i32) (param $q0 i32) (param $q1 i32) (param $q2 i32) (param $q3 i32) (param $o1 i32)
    (param $n i32)
    (local $j i32) (local $bytes i32) (local $a v128) (local $b v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $step
        (br_if $done (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $a (v128.load (i32.add (local.get $x0) (local.get $j))))
        (local.set $b (v128.load (i32.add (local.get $x1) (local.get $j))))
        (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (v128.load (i32.add (local.get $p0) (local.get $j))) (local.get $a))))
        (local.set $t0 (f32x4.add (local.get $t0) (f32x4.mul (v128.load (i32.add (local.get $q0) (local.get $j))) (local.get $b))))
        (local.set $s1 (f32x4.add (local.get $s1) (f32x4.mul (v128.load (i32.add (local.get $p1) (local.get $j))) (local.get $a))))
        (local.set $t1 (f32x4.add (local.get $t1) (f32x4.mul (v128.load (i32.add (local.get $q1) (local.get $j))) (local.get $b))))
        (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (v128.load (i32.add (local.get $p2) (local.get $j))) (local.get $a))))
        (local.set $t2 (f32x4.add (local.get $t2) (f32x4.mul (v128.load (i32.add (local.get $q2) (local.get $j))) (local.get $b))))
        (local.set $s3 (f32x4.add (local.get $s3) (f32x4.mul (v128.load (i32.add (local.get $p3) (local.get $j))) (local.get $a))))
        (local.set $t3 (f32x4.add (local.get $t3) (f32x4.mul (v128.load (i32.add (local.get $q3) (local.get $j))) (local.get $b))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $step)))
    (f32.store (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s0)) (f32x4.extract_lane 1 (local.get $s0))) (f32.add (f32x4.extract_lane 2 (local.get $s0)) (f32x4.extract_lane 3 (local.get $s0)))))
    (f32.store offset=4 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s1)) (f32x4.extract_lane 1 (local.get $s1))) (f32.add (f32x4.extract_lane 2 (local.get $s1)) (f32x4.extract_lane 3 (local.get $s1)))))
    (f32.store offset=8 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s2)) (f32x4.extract_lane 1 (local.get $s2))) (f32.add (f32x4.extract_lane 2 (local.get $s2)) (f32x4.extract_lane 3 (local.get $s2)))))
    (f32.store offset=12 (local.get $o0) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s3)) (f32x4.extract_lane 1 (local.get $s3))) (f32.add (f32x4.extract_lane 2 (local.get $s3)) (f32x4.extract_lane 3 (local.get $s3)))))
    (f32.store (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $t0)) (f32x4.extract_lane 1 (local.get $t0))) (f32.add (f32x4.extract_lane 2 (local.get $t0)) (f32x4.extract_lane 3 (local.get $t0)))))
    (f32.store offset=4 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $t1)) (f32x4.extract_lane 1 (local.get $t1))) (f32.add (f32x4.extract_lane 2 (local.get $t1)) (f32x4.extract_lane 3 (local.get $t1)))))
    (f32.store offset=8 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $t2)) (f32x4.extract_lane 1 (local.get $t2))) (f32.add (f32x4.extract_lane 2 (local.get $t2)) (f32x4.extract_lane 3 (local.get $t2)))))
    (f32.store offset=12 (local.get $o1) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $t3)) (f32x4.extract_lane 1 (local.get $t3))) (f32.add (f32x4.extract_lane 2 (local.get $t3)) (f32x4.extract_lane 3 (local.get $t3))))))

  ;; k-means' cost of list l at dot d: -d (spherical), else |c_l|^2 - 2d.
  (func $kcost (param $spherical i32) (param $norms i32) (param $l i32) (param $d f64) (result f64)
    (if (result f64) (local.get $spherical)
      (then (f64.neg (local.get $d)))
      (else (f64.sub (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3))))
        (f64.mul (f64.const 2) (local.get $d))))))

  ;; The stored lower bound of list l at dot d: sqrt(max(0, |x|^2 + |c_l|^2 - 2d)) + drift[l], in f32.
  (func $kbound (param $sn f64) (param $norms i32) (param $drift i32) (param $l i32) (param $d f64) (result f32)
    (f32.demote_f64 (f64.add
      (f64.sqrt (f64.max (f64.const 0)
        (f64.sub
          (f64.add (local.get $sn) (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3)))))
          (f64.mul (f64.const 2) (local.get $d)))))
      (f64.load (i32.add (local.get $drift) (i32.shl (local.get $l) (i32.const 3)))))))

  ;; k-means' full pass for a block of sample vectors scored against every centroid (`gemm`
  ;; wrote count x lists f32 scores at field 21), as ivf.ts did it in JavaScript: each vector
  ;; takes the list of lowest cost (the first on a tie), remembers the second, moves the lists'
  ;; f64 sums if it changed list (in block order), and gets its cost, count, upper bound,
  ;; Hamerly's lower bound (f64 per vector at field 26: the second's distance, or infinity) and,
  ;; when field 27 is 1, Elkan's lower bound for every list. Fields 0-23 as `kmeans`; 24 the
  ;; byte offsets (u32) of the block's sample rows (gemm's `xs`), 25 their count. Every float
  ;; step is ivf.ts's, in its order (kmeans.ts is the twin). Returns how many vectors moved.
  (func (export "kscored") (param $p i32) (result i32)
    (local $lists i32) (local $dim4 i32) (local $dim i32) (local $spherical i32) (local $sample i32)
    (local $norms i32) (local $snorms i32) (local $lower i32) (local $drift i32) (local $upper i32)
    (local $assign i32) (local $cost i32) (local $counts i32) (local $sums i32) (local $scores i32)
    (local $rows i32) (local $count i32) (local $hlower i32) (local $all i32)
    (local $q i32) (local $i i32) (local $a i32) (local $x i32) (local $s i32) (local $l i32)
    (local $best i32) (local $second i32) (local $moved i32) (local $stride i32) (local $lo i32)
    (local $at i32)
    (local $sn f64) (local $c f64) (local $bestCost f64) (local $secondCost f64)
    (local $v v128) (local $psn v128)
    (local.set $lists (i32.load offset=4 (local.get $p)))
    (local.set $dim4 (i32.load offset=8 (local.get $p)))
    (local.set $dim (i32.load offset=12 (local.get $p)))
    (local.set $spherical (i32.load offset=16 (local.get $p)))
    (local.set $sample (i32.load offset=20 (local.get $p)))
    (local.set $norms (i32.load offset=28 (local.get $p)))
    (local.set $snorms (i32.load offset=32 (local.get $p)))
    (local.set $lower (i32.load offset=36 (local.get $p)))
    (local.set $drift (i32.load offset=40 (local.get $p)))
    (local.set $upper (i32.load offset=60 (local.get $p)))
    (local.set $assign (i32.load offset=64 (local.get $p)))
    (local.set $cost (i32.load offset=68 (local.get $p)))
    (local.set $counts (i32.load offset=72 (local.get $p)))
    (local.set $sums (i32.load offset=76 (local.get $p)))
    (local.set $scores (i32.load offset=84 (local.get $p)))
    (local.set $rows (i32.load offset=96 (local.get $p)))
    (local.set $count (i32.load offset=100 (local.get $p)))
    (local.set $hlower (i32.load offset=104 (local.get $p)))
    (local.set $all (i32.load offset=108 (local.get $p)))
    (local.set $stride (i32.shl (local.get $dim4) (i32.const 2)))
    (block $done
      (loop $vec
        (br_if $done (i32.ge_u (local.get $q) (local.get $count)))
        (local.set $x (i32.load (i32.add (local.get $rows) (i32.shl (local.get $q) (i32.const 2)))))
        (local.set $i (i32.div_u (i32.sub (local.get $x) (local.get $sample)) (local.get $stride)))
        (local.set $a (i32.load (i32.add (local.get $assign) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $s (i32.add (local.get $scores) (i32.shl (i32.mul (local.get $q) (local.get $lists)) (i32.const 2))))
        (local.set $sn (f64.load (i32.add (local.get $snorms) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $best (i32.const 0))
        (local.set $second (i32.const -1))
        (local.set $bestCost (f64.const inf))
        (local.set $secondCost (f64.const inf))
        (local.set $l (i32.const 0))
        (block $scan_done
          (loop $scan
            (br_if $scan_done (i32.ge_u (local.get $l) (local.get $lists)))
            ;; the cost of list l: -d (spherical), else |c_l|^2 - 2d ($kcost, written out: a call
            ;; per list cost more than the arithmetic)
            (local.set $c (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (local.get $l) (i32.const 2))))))
            (local.set $c
              (if (result f64) (local.get $spherical)
                (then (f64.neg (local.get $c)))
                (else (f64.sub (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3))))
                  (f64.mul (f64.const 2) (local.get $c))))))
            (if (f64.lt (local.get $c) (local.get $bestCost))
              (then
                (local.set $second (local.get $best))
                (local.set $secondCost (local.get $bestCost))
                (local.set $bestCost (local.get $c))
                (local.set $best (local.get $l)))
              (else
                (if (f64.lt (local.get $c) (local.get $secondCost))
                  (then
                    (local.set $secondCost (local.get $c))
                    (local.set $second (local.get $l))))))
            (local.set $l (i32.add (local.get $l) (i32.const 1)))
            (br $scan)))
        (if (i32.ne (local.get $a) (local.get $best))
          (then
            (local.set $moved (i32.add (local.get $moved) (i32.const 1)))
            (call $kmove (local.get $sums) (local.get $dim) (local.get $a) (local.get $best) (local.get $x))))
        (i32.store (i32.add (local.get $assign) (i32.shl (local.get $i) (i32.const 2))) (local.get $best))
        (f64.store (i32.add (local.get $cost) (i32.shl (local.get $i) (i32.const 3)))
          (if (result f64) (local.get $spherical)
            (then (local.get $bestCost))
            (else (f64.add (local.get $bestCost) (local.get $sn)))))
        (local.set $at (i32.add (local.get $counts) (i32.shl (local.get $best) (i32.const 2))))
        (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1)))
        (f64.store (i32.add (local.get $upper) (i32.shl (local.get $i) (i32.const 3)))
          (call $kdist (local.get $sn) (local.get $norms) (local.get $best)
            (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (local.get $best) (i32.const 2)))))))
        (f64.store (i32.add (local.get $hlower) (i32.shl (local.get $i) (i32.const 3)))
          (if (result f64) (i32.and (i32.gt_u (local.get $lists) (i32.const 1)) (i32.ge_s (local.get $second) (i32.const 0)))
            (then (call $kdist (local.get $sn) (local.get $norms) (local.get $second)
              (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (local.get $second) (i32.const 2)))))))
            (else (f64.const inf))))
        (if (local.get $all)
          (then
            ;; sqrt(max(0, (|x|^2 + |c_l|^2) - 2 d)) + drift[l], two lists per f64x2 step
            (local.set $lo (i32.add (local.get $lower) (i32.shl (i32.mul (local.get $i) (local.get $lists)) (i32.const 2))))
            (local.set $psn (f64x2.splat (local.get $sn)))
            (local.set $l (i32.const 0))
            (block $pairs_done
              (loop $pairs
                (br_if $pairs_done (i32.gt_u (i32.add (local.get $l) (i32.const 2)) (local.get $lists)))
                (local.set $v (f32x4.demote_f64x2_zero (f64x2.add
                  (f64x2.sqrt (f64x2.max (f64x2.splat (f64.const 0))
                    (f64x2.sub
                      (f64x2.add (local.get $psn) (v128.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3)))))
                      (f64x2.mul (f64x2.splat (f64.const 2))
                        (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $s) (i32.shl (local.get $l) (i32.const 2)))))))))
                  (v128.load (i32.add (local.get $drift) (i32.shl (local.get $l) (i32.const 3)))))))
                (v128.store64_lane 0 (i32.add (local.get $lo) (i32.shl (local.get $l) (i32.const 2))) (local.get $v))
                (local.set $l (i32.add (local.get $l) (i32.const 2)))
                (br $pairs)))
            (if (i32.lt_u (local.get $l) (local.get $lists))
              (then
                (f32.store (i32.add (local.get $lo) (i32.shl (local.get $l) (i32.const 2)))
                  (call $kbound (local.get $sn) (local.get $norms) (local.get $drift) (local.get $l)
                    (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (local.get $l) (i32.const 2)))))))))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $vec)))
    (local.get $moved))

  ;; sqrt(max(0, (|x|^2 + |c_l|^2) - 2d)): the distance of x to list l from their dot product d.
  (func $kdist (param $sn f64) (param $norms i32) (param $l i32) (param $d f64) (result f64)
    (f64.sqrt (f64.max (f64.const 0)
      (f64.sub
        (f64.add (local.get $sn) (f64.load (i32.add (local.get $norms) (i32.shl (local.get $l) (i32.const 3)))))
        (f64.mul (f64.const 2) (local.get $d))))))

  ;; A vector (f32 row at x) moves from list `from` (none when negative) to list `to`: the
  ;; lists' f64 sums (dim per list) lose and gain it, two lanes at a time, each its own operation.
  (func $kmove (param $sums i32) (param $dim i32) (param $from i32) (param $to i32) (param $x i32)
    (local $j i32) (local $sa i32) (local $sb i32) (local $at i32) (local $v v128) (local $d f64)
    (local.set $sa (i32.add (local.get $sums) (i32.shl (i32.mul (local.get $from) (local.get $dim)) (i32.const 3))))
    (local.set $sb (i32.add (local.get $sums) (i32.shl (i32.mul (local.get $to) (local.get $dim)) (i32.const 3))))
    (block $pairs_done
      (loop $pairs
        (br_if $pairs_done (i32.gt_u (i32.add (local.get $j) (i32.const 2)) (local.get $dim)))
        (local.set $v (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $at (i32.shl (local.get $j) (i32.const 3)))
        (if (i32.ge_s (local.get $from) (i32.const 0))
          (then (v128.store (i32.add (local.get $sa) (local.get $at))
            (f64x2.sub (v128.load (i32.add (local.get $sa) (local.get $at))) (local.get $v)))))
        (v128.store (i32.add (local.get $sb) (local.get $at))
          (f64x2.add (v128.load (i32.add (local.get $sb) (local.get $at))) (local.get $v)))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $pairs)))
    (if (i32.lt_u (local.get $j) (local.get $dim))
      (then
        (local.set $d (f64.promote_f32 (f32.load (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $at (i32.shl (local.get $j) (i32.const 3)))
        (if (i32.ge_s (local.get $from) (i32.const 0))
          (then (f64.store (i32.add (local.get $sa) (local.get $at))
            (f64.sub (f64.load (i32.add (local.get $sa) (local.get $at))) (local.get $d)))))
        (f64.store (i32.add (local.get $sb) (local.get $at))
          (f64.add (f64.load (i32.add (local.get $sb) (local.get $at))) (local.get $d))))))
)
