/* in-cache GEMM tile rate: f32 tiles on an f32 panel vs bf16 dot tiles vs hi/lo tiles (one core) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "backend/cpu/kbf16.h"
#include "backend/cpu/kern.h"
#include "tensor/dtype.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  const struct cpu_bf16_kern *kb=cpu_bf16_kern_pick("avx512"); const struct cpu_kern *kf=cpu_kern_by_name("avx512");
  int k=512,m=64,n=96,reps=300;
  float *wf=aligned_alloc(64,4L*k*m),*xf=aligned_alloc(64,4L*(k+16)*n),c[8*8];
  uint16_t *wb=aligned_alloc(64,2L*k*m),*wh=aligned_alloc(64,2L*k*m),*hl=aligned_alloc(64,4L*k*m),*xb=aligned_alloc(64,2L*(k+32)*n);
  int ldx=k+16, ldxb=k+32;
  for(int i=0;i<k*m;i++){float u=(rand()/(float)RAND_MAX-0.5f)*0.05f; wh[i]=f32_to_f16(u); wf[i]=f16_to_f32(wh[i]); wb[i]=f32_to_bf16(u);}
  for(int i=0;i<ldx*n;i++) xf[i]=rand()/(float)RAND_MAX-0.5f;
  for(int i=0;i<ldxb*n;i++) xb[i]=f32_to_bf16(rand()/(float)RAND_MAX-0.5f);
  for(int j=0;j<m;j++) kb->split_f16(wh+j*k,hl+2L*j*k,k);
  for(int mode=0;mode<3;mode++){ double t=now();
    for(int r=0;r<reps;r++) for(int i=0;i<n;i+=6) for(int j=0;j<m;j+=4){
      if(mode==0) kf->tile(6,4,DTYPE_F32,k,xf+i*ldx,ldx,wf+j*k,4L*k,c,4);
      else if(mode==1) kb->tile(6,4,k,0,k,xb+i*ldxb,ldxb,wb+j*k,k,c,4,NULL);
      else kb->tile_hilo(6,4,k,0,k,xb+i*ldxb,ldxb,hl+2L*j*k,2*k,c,4,NULL);}
    t=now()-t; printf("%s: %.1f GFLOP/s\n", mode==0?"f32 tiles":mode==1?"bf16 dot":"f16 hi/lo", 2.0*reps*n*m*k/t/1e9);}
  return 0;}
