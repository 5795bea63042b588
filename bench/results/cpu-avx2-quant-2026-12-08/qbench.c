/* scratch: time cpu_qint_{avx2,portable} at n=1 on [rows, k] weights, in cache and rotated (DRAM). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include "backend/cpu/qint.h"
#include "tensor/dtype.h"
#include "tensor/qweight.h"
#include "tensor/tensor.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
struct qw { struct qweight q; struct tensor w; struct buffer bp, bs, bb; };
static void mk(struct qw *o, int bits, int gs, int64_t rows, int64_t k){
  int64_t words=k*bits/32, groups=k/gs;
  size_t pb=((size_t)(rows*words)*4+(2u<<20)-1)/(2u<<20)*(2u<<20); uint32_t *p=aligned_alloc(2u<<20,pb); madvise(p,pb,MADV_HUGEPAGE); uint16_t *s=malloc(rows*groups*2),*b=malloc(rows*groups*2);
  for(int64_t i=0;i<rows*words;i++) p[i]=(uint32_t)rand()*2654435761u;
  for(int64_t i=0;i<rows*groups;i++){float f=0.01f*(1+rand()%7),g=-0.05f; dtype_from_f32(DTYPE_BF16,&f,s+i,1);dtype_from_f32(DTYPE_BF16,&g,b+i,1);}
  o->bp=(struct buffer){.kind=BUF_HOST,.data=p,.bytes=rows*words*4};
  o->bs=(struct buffer){.kind=BUF_HOST,.data=s,.bytes=rows*groups*2};
  o->bb=(struct buffer){.kind=BUF_HOST,.data=b,.bytes=rows*groups*2};
  o->q=(struct qweight){.mode=QMODE_AFFINE,.bits=bits,.group_size=gs};
  o->q.scales=tensor_2d(DTYPE_BF16,groups,rows,&o->bs,0); o->q.biases=tensor_2d(DTYPE_BF16,groups,rows,&o->bb,0);
  struct tensor pt=tensor_2d(DTYPE_U32,words,rows,&o->bp,0); o->w=qweight_tensor(&o->q,&pt,k);
}
int main(int argc,char**argv){
  int bits=atoi(argv[1]); int64_t rows=atoll(argv[2]),k=atoll(argv[3]); int ncopy=atoi(argv[4]);
  const char *isa=argc>5?argv[5]:"avx2";
  cpu_qint_fn f=cpu_qint_pick(isa);
  struct qw *w=calloc(ncopy,sizeof *w); for(int i=0;i<ncopy;i++) mk(&w[i],bits,64,rows,k);
  float *x=malloc(k*4); for(int i=0;i<k;i++) x[i]=(rand()%2001-1000)*0.001f;
  size_t ld=cpu_qint_x_bytes(k,bits,64); uint8_t *xq=aligned_alloc(64,ld);
  float *out=malloc(rows*4), *ref=malloc(rows*4);
  cpu_qint_quantize_fn prep=cpu_qint_quantize_pick(isa);
  cpu_qint_quantize_x(x,k,bits,64,xq); cpu_qint_portable(&w[0].w,0,rows,xq,ld,1,ref,rows);
  double t0=now(); int it=0; for(;it<2000;it++) prep(x,k,bits,64,xq); double tq=(now()-t0)/it;
  f(&w[0].w,0,rows,xq,ld,1,out,rows);
  int bad=memcmp(ref,out,rows*4)!=0;
  double bytes=(double)rows*(k*bits/8+ (k/64)*4);
  int reps=ncopy==1?400:60; double best=1e9;
  for(int r=0;r<5;r++){ t0=now(); for(int i=0;i<reps;i++) f(&w[i%ncopy].w,0,rows,xq,ld,1,out,rows); double t=(now()-t0)/reps; if(t<best)best=t;}
  printf("%s %d-bit [%lld,%lld] copies=%d: %.1f us %.2f GB/s  prep %.2f us  %s\n",isa,bits,(long long)rows,(long long)k,ncopy,best*1e6,bytes/best/1e9,tq*1e6,bad?"MISMATCH":"bitwise ok");
  return 0;
}
