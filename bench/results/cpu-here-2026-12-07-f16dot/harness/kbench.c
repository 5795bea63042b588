#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "backend/cpu/kbf16.h"
#include "backend/cpu/kern.h"
#include "tensor/dtype.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  const struct cpu_bf16_kern *kb=cpu_bf16_kern_pick("avx512");
  int k=2048,m=argc>2?atoi(argv[2]):256; int reps=argc>3?atoi(argv[3]):200; float scale=argc>1?atof(argv[1]):0.02f;
  uint16_t *w=malloc(2L*k*m),*wb=malloc(2L*k*m),*x=malloc(2*k*8),*hl=malloc(4L*k*m);
  srand(1);
  for(int i=0;i<k*m;i++){float u=((rand()+0.5f)/RAND_MAX-0.5f)*2*1.7f*scale; w[i]=f32_to_f16(u); wb[i]=f32_to_bf16(u);}
  for(int i=0;i<k*8;i++) x[i]=f32_to_bf16((rand()+0.5f)/RAND_MAX-0.5f);
  for(int j=0;j<m;j++) kb->split_f16(w+(size_t)j*k,hl+(size_t)j*2*k,k);
  float c[8*4]; double t;
  const struct cpu_kern *kf=cpu_kern_by_name("avx512"); float *xf=malloc(4L*k*8); for(int i=0;i<k*8;i++) xf[i]=bf16_to_f32(x[i]);
  for(int mode=0;mode<4;mode++){
    t=now();
    for(int r=0;r<reps;r++) for(int j=0;j<m;j+=(mode==1?8:4)){
      if(mode==0) kb->tile(1,4,k,0,k,x,k,wb+(size_t)j*k,k,c,4,NULL);
      else if(mode==1) kb->tile_f16(1,8,k,0,k,x,k,w+(size_t)j*k,k,c,8,NULL);
      else if(mode==2) kb->tile_hilo(1,4,k,0,k,x,k,hl+(size_t)j*2*k,2*k,c,4,NULL);
      else kf->tile(1,4,DTYPE_F16,k,xf,k,w+(size_t)j*k,2L*k,c,4);
    }
    t=now()-t; printf("mode %s: %.2f Gweights/s  (%.1f ns per 32-chunk-row)\n", mode==0?"bf16":mode==1?"f16 reg 1x8":mode==2?"hilo":"f32 tiles on f16", (double)reps*m*k/t/1e9, t/((double)reps*m*k/32)*1e9);
  }
  return 0;
}
